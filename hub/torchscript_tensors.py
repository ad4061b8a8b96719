# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Read the tensors of a TorchScript archive (OpenAI's `ViT-B-32.pt`) without running any of its code.

`torch.jit.load` compiles and runs the archive's TorchScript, including a module's `__setstate__`, so a crafted file
can change its own weights or do worse while it is being read. This reader opens the zip, refuses archives whose code
defines `__setstate__`, and unpickles `data.pkl` with an allow-list: tensor and storage rebuilding only. Module
classes (`__torch__.*`) become inert attribute holders; any other global (`os.system`, `builtins.eval`, ...) is
refused before it is called. Storages are read straight from the archive's `data/` entries.

Example:

```python
>>> import os, tempfile, torch
>>> from modeling_avigate.hub.torchscript_tensors import read_torchscript_tensors
>>> path = os.path.join(tempfile.mkdtemp(), "linear.pt")
>>> torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), path)
>>> sorted(read_torchscript_tensors(path))
['bias', 'weight']
```
"""

import collections
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
import torch.jit._pickle


# The storage classes a TorchScript `data.pkl` names, and the dtype each one holds.
STORAGE_DTYPES = {
    f"{name}Storage": dtype
    for name, dtype in (
        ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
        ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16), ("Char", torch.int8),
        ("Byte", torch.uint8), ("Bool", torch.bool),
    )
}
# Code entries are scanned for `__setstate__` in blocks, and refused past a generous bound on the code a module needs.
SETSTATE = b"def __setstate__"
CODE_BLOCK_BYTES = 1 << 20
MAX_CODE_BYTES = 64 << 20
# Functions `data.pkl` may call: torch's own tensor rebuilding, the empty hook dict it passes along, and TorchScript's
# typed-container tags (each returns its argument unchanged).
ALLOWED_CALLS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch.jit._pickle", name): getattr(torch.jit._pickle, name)
       for name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag")},
}


class ScriptModuleState:
    """Stands in for a TorchScript module class while unpickling: it keeps the attributes and runs nothing."""

    # Unpickling creates instances without calling __init__; a module pickled without state has no attributes.
    attributes: Mapping = MappingProxyType({})

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a module's state is not an attribute dict (custom __getstate__)")
        self.attributes = state


class _StorageDtype:
    """What `data.pkl`'s `torch.FloatStorage` (etc.) global resolves to: only the dtype is needed."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str):
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, torch.storage.TypedStorage] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return ScriptModuleState
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageDtype(STORAGE_DTYPES[name])
        if (module, name) in ALLOWED_CALLS:
            return ALLOWED_CALLS[module, name]
        raise pickle.UnpicklingError(f"data.pkl names {module}.{name}, which is not a tensor-rebuild function")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, numel = saved_id
        if kind != "storage" or not isinstance(storage_type, _StorageDtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
        if key not in self.storages:
            num_bytes = numel * storage_type.dtype.itemsize
            data = _read_storage(self.archive, f"{self.prefix}data/{key}", num_bytes)
            untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if data else torch.UntypedStorage(0)
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype,
                                                            _internal=True)
        return self.storages[key]


def _defines_setstate(archive: zipfile.ZipFile, name: str, path: Path) -> bool:
    """Whether code entry `name` defines `__setstate__`, read in blocks: an entry that inflates to gigabytes (a zip
    bomb) is refused once it passes `MAX_CODE_BYTES` instead of being held in memory."""
    tail, size = b"", 0
    with archive.open(name) as entry:
        while block := entry.read(CODE_BLOCK_BYTES):
            size += len(block)
            if size > MAX_CODE_BYTES:
                raise ValueError(f"{path}: the archive's code entry {name} inflates to more than "
                                 f"{MAX_CODE_BYTES >> 20} MiB, which no TorchScript module's code needs; refusing it")
            if SETSTATE in tail + block:
                return True
            tail = block[-(len(SETSTATE) - 1):]
    return False


def _read_storage(archive: zipfile.ZipFile, name: str, num_bytes: int) -> bytearray:
    """The `num_bytes` bytes of storage entry `name`, read into one buffer: an entry of another size is refused before
    it is inflated."""
    if archive.getinfo(name).file_size != num_bytes:
        raise ValueError(f"storage {name} holds {archive.getinfo(name).file_size} bytes, its tensor needs {num_bytes}")
    data = bytearray(num_bytes)
    with archive.open(name) as entry:
        view, filled = memoryview(data), 0
        while filled < num_bytes and (count := entry.readinto(view[filled:])):
            filled += count
    if filled != num_bytes:
        raise ValueError(f"storage {name} ends after {filled} of {num_bytes} bytes")
    return data


def _module_tensors(module: ScriptModuleState, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor attribute of a module tree, under dotted names (what `state_dict()` would list, plus plain tensor
    attributes such as OpenAI CLIP's `input_resolution`)."""
    tensors = {}
    for name, value in module.attributes.items():
        if isinstance(value, torch.Tensor):
            tensors[prefix + name] = value.detach()
        elif isinstance(value, ScriptModuleState):
            tensors.update(_module_tensors(value, f"{prefix}{name}."))
    return tensors


def _archive_prefix(archive: zipfile.ZipFile, path: Path) -> str:
    names = archive.namelist()
    prefixes = {name[: -len("data.pkl")] for name in names if name.endswith("data.pkl") and name.count("/") == 1}
    if len(prefixes) != 1:
        raise ValueError(f"{path} is not a TorchScript archive (expected one top-level data.pkl)")
    return prefixes.pop()


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the TorchScript module saved at `path`, by attribute path, without running its code.

    Raises:
        ValueError: the archive defines code that runs on load (`__setstate__`), its `data.pkl` names anything but
            tensor rebuilding, or it is not a little-endian TorchScript archive. The message names the file.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive, path)
        for name in archive.namelist():
            if name.startswith(f"{prefix}code/") and name.endswith(".py") and _defines_setstate(archive, name, path):
                raise ValueError(f"{path}: the archive's code restores a module with its own __setstate__ ({name}), "
                                 "which would run on load; refusing it. Convert the file to safetensors with a tool "
                                 "you trust first")
        if f"{prefix}byteorder" in archive.namelist() and archive.open(f"{prefix}byteorder").read(8) != b"little":
            raise ValueError(f"{path}: big-endian TorchScript archives are not supported")
        try:
            root = _TensorOnlyUnpickler(archive, prefix).load()
        except (pickle.UnpicklingError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise ValueError(f"{path}: refusing to read the TorchScript archive ({error}); it may run code when "
                             "loaded. Convert it to safetensors with a tool you trust first") from error
    if not isinstance(root, ScriptModuleState):
        raise ValueError(f"{path}: the TorchScript archive does not hold a module")
    return _module_tensors(root)


__all__ = ["read_torchscript_tensors"]
