"""Memory-mapped per-video feature caches.

AVIGATE keeps its AST encoder frozen, so the AST token states before the final LayerNorm depend only on the sound
track: they are computed once per video and read back at every epoch (`--audio_cache`). The same container holds
decoded, normalised frames (`--frame_cache`) for small benchmarks whose decoding would otherwise dominate a CPU run.
Arrays are stored as fp16 `.npy` files and opened with `mmap_mode="r"`, so a cache larger than RAM still works.

A cache folder carries the package's `feature_cache` marker (see `modeling_avigate.folders`): it is built in a marked
staging folder and renamed into place, and a rebuild replaces only a folder with that marker (or an empty one), so a
cache path pointing at a folder of the user's own files is refused before anything is written.
"""

import contextlib
import json
import os
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from .folders import atomic_folder, is_owned, recover_interrupted_replace


INDEX_FILE = "cache_index.json"
FOLDER_KIND = "feature_cache"


class FeatureCache:
    """Rows of fixed-shape arrays keyed by video id.

    Example:

    ```python
    >>> import tempfile, torch
    >>> from modeling_avigate.feature_cache import FeatureCache
    >>> directory = tempfile.mkdtemp() + "/cache"
    >>> batches = [(["a", "b"], {"x": torch.ones(2, 3)})]
    >>> cache = FeatureCache.write(directory, batches, num_rows=2, fingerprint="demo")
    >>> FeatureCache.open(directory, fingerprint="demo").get("b")["x"].tolist()
    [1.0, 1.0, 1.0]
    ```
    """

    def __init__(self, directory: str, rows: dict[str, int], arrays: dict[str, np.ndarray], fingerprint: str):
        self.directory = directory
        self.rows = rows
        self.arrays = arrays
        self.fingerprint = fingerprint

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, video_id: str) -> dict[str, torch.Tensor]:
        row = self.rows[video_id]
        return {name: torch.from_numpy(np.array(array[row])) for name, array in self.arrays.items()}

    @classmethod
    def write(
        cls,
        directory: str,
        batches: Iterable[tuple[list[str], Mapping[str, torch.Tensor]]],
        num_rows: int,
        fingerprint: str,
    ) -> "FeatureCache":
        """Write `(video_ids, {name: tensor [B, ...]})` batches; see [`FeatureCacheWriter`]."""
        writer = FeatureCacheWriter(directory, num_rows, fingerprint)
        for video_ids, features in batches:
            writer.add(video_ids, features)
        return writer.close()

    @classmethod
    def open(cls, directory: str, fingerprint: str | None = None) -> "FeatureCache":
        """Open a cache read-only; with `fingerprint`, refuse one built from other weights or settings."""
        recover_interrupted_replace(directory)
        index_path = os.path.join(directory, INDEX_FILE)
        # Only a folder this package marked is read: another tool's `cache_index.json` is not ours to interpret.
        if not is_owned(directory, FOLDER_KIND) or not os.path.isfile(index_path):
            raise FileNotFoundError(f"{directory} is not a feature cache (no {INDEX_FILE} with the package's marker)")
        with open(index_path) as handle:
            index = json.load(handle)
        if fingerprint is not None and index["fingerprint"] != fingerprint:
            raise ValueError(
                f"feature cache {directory} was built from other weights or settings (fingerprint "
                f"{index['fingerprint'][:12]} != {fingerprint[:12]}); delete it or point to another folder"
            )
        arrays = {name: np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r") for name in index["arrays"]}
        return cls(directory, index["rows"], arrays, index["fingerprint"])


class FeatureCacheWriter:
    """Fills a [`FeatureCache`] batch by batch; float tensors are stored as fp16. `num_rows` is an upper bound
    (videos that fail to decode leave their rows unused).

    The cache is assembled in a marked staging folder beside `directory` and renamed into place by `close`, so an
    interrupted build leaves nothing that `FeatureCache.open` would accept (the next build removes the leftover). A
    `directory` that is neither absent, empty nor a feature cache raises `FolderOwnershipError` here, before any work.
    """

    def __init__(self, directory: str, num_rows: int, fingerprint: str):
        self.directory = directory
        self.num_rows = num_rows
        self.fingerprint = fingerprint
        self.rows: dict[str, int] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self._folder = contextlib.ExitStack()
        self.staging = self._folder.enter_context(atomic_folder(directory, FOLDER_KIND))

    def add(self, video_ids: list[str], features: Mapping[str, torch.Tensor]) -> None:
        start = len(self.rows)
        if start + len(video_ids) > self.num_rows:
            raise ValueError(f"{self.directory}: more rows than the {self.num_rows} the cache was sized for")
        for name, tensor in features.items():
            values = tensor.detach().cpu()
            values = values.to(torch.float16) if values.is_floating_point() else values
            if name not in self.arrays:
                self.arrays[name] = np.lib.format.open_memmap(
                    os.path.join(self.staging, f"{name}.npy"), mode="w+", dtype=values.numpy().dtype,
                    shape=(self.num_rows, *values.shape[1:]),
                )
            self.arrays[name][start : start + len(video_ids)] = values.numpy()
        for offset, video_id in enumerate(video_ids):
            self.rows[video_id] = start + offset

    def close(self) -> FeatureCache:
        for array in self.arrays.values():
            array.flush()
        with open(os.path.join(self.staging, INDEX_FILE), "w") as handle:
            json.dump({"fingerprint": self.fingerprint, "rows": self.rows, "arrays": sorted(self.arrays)}, handle)
        self._folder.close()
        return FeatureCache.open(self.directory, self.fingerprint)
