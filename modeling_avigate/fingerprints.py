# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The one home of the package's hashes: what identifies a model, a set of tensors, a file or a data folder.

An index records its model's [`config_hash`] and [`weights_fingerprint`] and a [`sha256_file`] per data file; a
feature cache records a [`tensor_fingerprint`] of the weights it depends on and a [`files_fingerprint`] of the videos
it was built from; a dataset builder keys its cache on a [`directory_fingerprint`] of the data folder.

Example:

```python
>>> import torch
>>> from modeling_avigate.fingerprints import tensor_fingerprint
>>> tensor_fingerprint({"w": torch.ones(2)}) == tensor_fingerprint({"w": torch.ones(2, dtype=torch.float16)})
True
```
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # torch is imported where it is used: `avigate info` checks file hashes without it
    import torch


# Config keys that describe how a model was saved or loaded, not what it computes.
VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "architectures", "auto_map", "dtype", "torch_dtype",
                        "_commit_hash", "_attn_implementation", "_attn_implementation_autoset", "output_attentions",
                        "output_hidden_states", "return_dict"}
_FILE_BLOCK_BYTES = 1 << 24
# A file's signature hashes this many leading bytes: enough to hold a container's header (and so tell two files of
# one size apart), read in well under a millisecond.
HEADER_BYTES = 1 << 16


def strip_keys(value: Any, volatile: set[str]) -> Any:
    """`value` with the `volatile` keys removed from every nested dict, keys sorted."""
    if isinstance(value, dict):
        return {key: strip_keys(item, volatile) for key, item in sorted(value.items()) if key not in volatile}
    return value


def config_hash(config) -> str:
    """SHA-256 of everything in a model config that changes what the model computes (not where it was loaded from)."""
    canonical = json.dumps(strip_keys(config.to_dict(), VOLATILE_CONFIG_KEYS), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def weights_fingerprint(model) -> str:
    """SHA-256 of an `AvigateModel`'s projections, frame positions and logit scale: cheap, and differs between two
    checkpoints of the same architecture."""
    digest = hashlib.sha256()
    for tensor in (model.text_projection.weight, model.visual_projection.weight, model.audio_projection.weight,
                   model.frame_position_embedding.weight, model.logit_scale):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tensor_fingerprint(tensors: Mapping[str, "torch.Tensor"], extra: Mapping | None = None) -> str:
    """SHA-256 over named tensors (as float32) and JSON-able settings: a cache built from other weights is refused."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_FILE_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def file_signature(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a media file without reading it all: its `size`, `mtime_ns` and the SHA-256 of its first
    [`HEADER_BYTES`] (`header_sha256`). A copy keeps the size and header hash; an edit in place changes the time."""
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        header = handle.read(HEADER_BYTES)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "header_sha256": hashlib.sha256(header).hexdigest()}


def files_fingerprint(files: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """Hash of each `(name, path)`'s name, size and modification time, in the order given (no file is read; a missing
    file counts as size and time -1), so a file rewritten in place changes it."""
    digest = hashlib.sha256()
    for name, path in files:
        try:
            stat = os.stat(path)
            size, modified = stat.st_size, stat.st_mtime_ns
        except OSError:
            size = modified = -1
        digest.update(f"{name}\0{size}\0{modified}\n".encode())
    return digest.hexdigest()[:16]


def directory_fingerprint(data_dir: str | os.PathLike) -> str:
    """[`files_fingerprint`] of every file under `data_dir`, named by its relative path, in a fixed order."""
    files = []
    for root, dirs, names in os.walk(data_dir):
        dirs.sort()
        files += [(os.path.relpath(os.path.join(root, name), data_dir), os.path.join(root, name))
                  for name in sorted(names)]
    return files_fingerprint(files)


__all__ = [
    "config_hash",
    "directory_fingerprint",
    "file_signature",
    "files_fingerprint",
    "sha256_file",
    "strip_keys",
    "tensor_fingerprint",
    "weights_fingerprint",
]
