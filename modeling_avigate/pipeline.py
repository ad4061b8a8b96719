# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Decoded, processed videos as datasets: paths or dataset rows → model inputs, one item or one batch at a time.

Training's pair loader and every embedding run (`modeling_avigate.embedding`) read videos through these classes, so
decoding, batching and error handling are written once:

- [`VideoDataset`] decodes one row per item (in DataLoader workers) or reads it from feature caches. A file that
  cannot be used raises [`MediaError`] inside the decoder; the dataset turns it into a skip record, never anything
  else: any other exception is a bug and propagates.
- [`VideoCollator`] stacks the rows, tokenises captions and lists the skipped files of the batch.
- [`TrainingPairs`] and [`HardNegativeSampler`]: (caption, video) pairs in contrastive batches.
"""

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from transformers.feature_extraction_utils import BatchFeature

from .feature_cache import FeatureCache
from .processors import AvigateProcessor, MediaError


logger = logging.getLogger(__name__)

VIDEO_INPUTS = ("pixel_values", "video_mask", "input_values", "has_audio")


@dataclass(frozen=True)
class SkippedVideo:
    """A row whose file could not be used: its dataset position, the file and the reason ([`MediaError`]'s)."""

    position: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_error(self) -> MediaError:
        return MediaError(self.path, self.reason)


def report_skipped(skipped: Sequence[SkippedVideo], total: int, what: str) -> None:
    """Log one warning listing every skipped file and why (nothing when none was skipped)."""
    if skipped:
        listing = "\n  ".join(str(item) for item in skipped)
        logger.warning("%s: skipped %d of %d videos that could not be used:\n  %s", what, len(skipped), total, listing)


def video_rows(videos: Any) -> tuple[list[str], list[str]]:
    """`(video_ids, paths)` of a list of paths, or of rows with a `video` column (a `datasets.Dataset`, a dict of
    columns) and optionally a `video_id` column (cache keys; the path otherwise)."""
    if isinstance(videos, (str, os.PathLike)):
        raise ValueError("`videos` must be a list of paths or rows with a `video` column, not a single path.")
    if hasattr(videos, "column_names") or isinstance(videos, dict):
        # A `datasets.Video`-style column holds {"path": ...} items; plain columns hold the paths.
        paths = [os.fspath(item["path"] if isinstance(item, dict) else item) for item in videos["video"]]
        names = videos.column_names if hasattr(videos, "column_names") else list(videos)
        ids = [str(video_id) for video_id in videos["video_id"]] if "video_id" in names else list(paths)
        return ids, paths
    paths = [os.fspath(path) for path in videos]
    return list(paths), paths


class VideoDataset(Dataset):
    """One item per row: the model's video inputs (and the row's caption, if given), decoded by
    `processor.process_video` or read from feature caches.

    With both caches the file is not opened; with an audio cache the item carries `audio_hidden_states` (the frozen
    AST's states) instead of `input_values`. A row whose file raises [`MediaError`], or which a cache lacks (its file
    failed when the cache was built), becomes `{"position": i, "skipped": SkippedVideo}`.

    Args:
        processor: the [`AvigateProcessor`].
        videos: paths, or rows with a `video` column and optionally `video_id` (see [`video_rows`]).
        texts: one caption per row, or `None`.
        frame_cache, audio_cache: optional [`FeatureCache`]s keyed by video id.

    Example (`processor` loaded beforehand):

    ```python
    >>> from torch.utils.data import DataLoader
    >>> dataset = VideoDataset(processor, ["a.mp4", "b.mp4"], texts=["a dog", "a cat"])  # doctest: +SKIP
    >>> batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=VideoCollator(processor))))  # doctest: +SKIP
    >>> batch.pop("positions"), batch.pop("skipped")  # doctest: +SKIP
    (tensor([0, 1]), [])
    ```
    """

    def __init__(
        self,
        processor: AvigateProcessor,
        videos: Any,
        texts: Sequence[str] | None = None,
        frame_cache: FeatureCache | None = None,
        audio_cache: FeatureCache | None = None,
    ):
        self.processor = processor
        self.video_ids, self.paths = video_rows(videos)
        if texts is not None and len(texts) != len(self.paths):
            raise ValueError(f"`texts` has {len(texts)} items but `videos` has {len(self.paths)}.")
        self.texts = None if texts is None else list(texts)
        self.frame_cache = frame_cache
        self.audio_cache = audio_cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            item = self.video_inputs(index)
        except MediaError as error:
            return {"position": index, "skipped": SkippedVideo(index, self.paths[index], error.reason)}
        item["position"] = index
        if self.texts is not None:
            item["text"] = self.texts[index]
        return item

    def video_inputs(self, index: int) -> dict[str, Any]:
        """The video inputs of row `index` as tensors; raises [`MediaError`] for an unusable file."""
        video_id = self.video_ids[index]
        caches = [cache for cache in (self.frame_cache, self.audio_cache) if cache is not None]
        if any(video_id not in cache for cache in caches):
            raise MediaError(self.paths[index], "not in the feature cache (it could not be used when the cache was "
                                                "built)")
        if self.frame_cache is not None:
            item = self.frame_cache.get(video_id)
            if self.audio_cache is None:
                decoded = self.processor.process_video(self.paths[index])
                item["input_values"] = torch.from_numpy(decoded["input_values"])
        else:
            decoded = self.processor.process_video(self.paths[index])
            item = {name: torch.as_tensor(decoded[name]) for name in VIDEO_INPUTS}
        if self.audio_cache is not None:
            item.pop("input_values", None)
            item.update(self.audio_cache.get(video_id))
        # The frame cache stores fp16; the model (or `BatchFeature.to(dtype)`) expects float.
        item["pixel_values"] = item["pixel_values"].float()
        return item


class VideoCollator:
    """Batch [`VideoDataset`] items into a [`BatchFeature`] of torch tensors: the stacked video inputs, the tokenised
    captions (when the items have them), `positions` (dataset rows kept, a LongTensor) and `skipped` (a list of
    [`SkippedVideo`]). A batch whose rows were all skipped has no input tensors."""

    def __init__(self, processor: AvigateProcessor):
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> BatchFeature:
        kept = [item for item in items if "skipped" not in item]
        data: dict[str, Any] = {"positions": torch.tensor([item["position"] for item in kept], dtype=torch.long)}
        if kept:
            names = [name for name in kept[0] if name not in ("position", "text")]
            data.update({name: torch.stack([torch.as_tensor(item[name]) for item in kept]) for name in names})
        if kept and "text" in kept[0]:
            tokens = self.processor(text=[item["text"] for item in kept], return_tensors="pt")
            data.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        batch = BatchFeature(data)
        # Set after construction: BatchFeature would try to turn the records into tensors.
        batch["skipped"] = [item["skipped"] for item in items if "skipped" in item]
        return batch


class TrainingPairs(Dataset):
    """(caption, video) training pairs for contrastive batches of a fixed size, collated by [`VideoCollator`] into
    model inputs with `input_ids` (pop `positions` and `skipped` before the model, or use [`collate_training_pairs`]).

    Pairs whose video a complete cache lacks (listed when the cache was built) are dropped up front. A video that
    raises [`MediaError`] while training is replaced by the next pair and logged with its reason, so every batch keeps
    its size; with `strict=True` the error stops the run instead.
    """

    def __init__(
        self,
        pairs: Any,
        processor: AvigateProcessor,
        frame_cache: FeatureCache | None = None,
        audio_cache: FeatureCache | None = None,
        strict: bool = False,
    ):
        videos = VideoDataset(processor, pairs, texts=list(pairs["caption"]), frame_cache=frame_cache,
                              audio_cache=audio_cache)
        caches = [cache for cache in (frame_cache, audio_cache) if cache is not None]
        self.rows = [row for row, video_id in enumerate(videos.video_ids) if all(video_id in c for c in caches)]
        if len(self.rows) < len(videos):
            logger.warning("training: %d of %d pairs dropped, their videos are not in the feature cache",
                           len(videos) - len(self.rows), len(videos))
        self.pairs = pairs
        self.videos = videos
        self.strict = strict
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def column_values(self, columns: Sequence[str]) -> list[tuple]:
        """Each kept pair's values of `columns`, in item order (the keys of a [`HardNegativeSampler`])."""
        missing = [name for name in columns if name not in self.pairs.column_names]
        if missing:
            raise ValueError(f"{missing} are not columns of the training pairs (they have "
                             f"{', '.join(self.pairs.column_names)})")
        values = list(zip(*(self.pairs[name] for name in columns)))
        return [values[row] for row in self.rows]

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(len(self.rows)):
            item = self.videos[self.rows[(index + attempt) % len(self.rows)]]
            if "skipped" not in item:
                return item
            skipped = item["skipped"]
            if self.strict:
                raise skipped.to_error()
            if skipped.path not in self.skipped:
                self.skipped[skipped.path] = skipped.reason
                logger.warning("training: replacing the pair of %s (%d unusable videos so far)", skipped,
                               len(self.skipped))
        raise MediaError(self.videos.paths[self.rows[index]], "no video of the training set could be used")


def collate_training_pairs(processor: AvigateProcessor):
    """Collate function of [`TrainingPairs`]: [`VideoCollator`] without the bookkeeping keys, ready for
    `model(**batch)`."""
    collator = VideoCollator(processor)

    def collate(items: list[dict[str, Any]]) -> BatchFeature:
        batch = collator(items)
        batch.pop("positions")
        batch.pop("skipped")
        return batch

    return collate


class HardNegativeSampler(Sampler[int]):
    """Training order in which consecutive items look alike, so a DataLoader whose batch size is a multiple of the
    first group size fills each contrastive batch with groups of look-alikes: each caption then meets negatives that
    differ from its video in only a detail, which random batches rarely hold.

    `levels` go from coarse to fine, each a pair (keys, group size) with one key per item: every aligned run of
    `size` items shares its key, and finer levels split each coarser group into sub-groups sharing their own keys
    (e.g. groups of 8 clips with one colour and background, made of two runs of 4 with one shape as well). Each
    epoch (`set_epoch`, as Accelerate calls it) reshuffles: every key's items are shuffled and cut into groups; the
    items left over when a key's count is not a multiple of the size go, shuffled together, into mixed groups after
    the whole ones. Every item appears once per epoch.

    Example:

    ```python
    >>> from modeling_avigate.pipeline import HardNegativeSampler
    >>> colours = ["red", "blue"] * 4
    >>> order = list(HardNegativeSampler([(colours, 2)], seed=0))
    >>> sorted(order), all(colours[a] == colours[b] for a, b in zip(order[::2], order[1::2]))
    ([0, 1, 2, 3, 4, 5, 6, 7], True)
    ```
    """

    def __init__(self, levels: Sequence[tuple[Sequence[Any], int]], seed: int = 0):
        sizes = [size for _, size in levels]
        if not levels or any(size < 1 for size in sizes) or any(a % b for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"group sizes must be positive and each a multiple of the next, got {sizes}")
        if len({len(keys) for keys, _ in levels}) != 1:
            raise ValueError("every level needs one key per item")
        self.levels, self.seed, self.epoch = [(list(keys), size) for keys, size in levels], seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.levels[0][0])

    def __iter__(self) -> Iterator[int]:
        # One stream per (seed, epoch), so resuming at an epoch replays its order. (The published demo results were
        # trained with this exact seeding; changing it changes every synthetic run.)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from self._arrange(list(range(len(self))), 0, generator)

    def _arrange(self, items: list[int], level: int, generator: torch.Generator) -> list[int]:
        """`items` ordered so that aligned runs share the keys of `level` and, within them, of the finer levels."""
        if level == len(self.levels):
            return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
        keys, size = self.levels[level]
        members: dict[Any, list[int]] = {}
        for item in items:
            members.setdefault(keys[item], []).append(item)
        groups, leftovers = [], []
        for key_items in members.values():
            ordered = self._arrange(key_items, level + 1, generator)
            whole = len(ordered) - len(ordered) % size
            groups += [ordered[start : start + size] for start in range(0, whole, size)]
            leftovers += ordered[whole:]
        shuffled = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        mixed = [leftovers[i] for i in torch.randperm(len(leftovers), generator=generator).tolist()]
        return [item for group in shuffled for item in group] + mixed




__all__ = [
    "HardNegativeSampler",
    "SkippedVideo",
    "TrainingPairs",
    "VideoCollator",
    "VideoDataset",
    "collate_training_pairs",
    "report_skipped",
    "video_rows",
]
