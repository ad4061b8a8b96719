# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The one way videos reach the model: paths or dataset rows → decoded, processed, batched inputs on a device.

Training (its feature caches and its pair loader), `evaluate_retrieval` and `VideoIndex` all go through this module,
so decoding, batching, error handling and device moves are written once:

- [`VideoDataset`] decodes one row per item (in DataLoader workers) or reads it from feature caches. A file that
  cannot be used raises [`MediaError`] inside the decoder; the dataset turns it into a skip record, never anything
  else: any other exception is a bug and propagates.
- [`VideoCollator`] stacks the rows, tokenises captions and lists the skipped files of the batch.
- [`video_batches`] yields the inputs of each batch on a device (`BatchFeature.to(device, dtype)`), with the dataset
  positions of its rows and the files it skipped; with `strict=True` it raises the first file's `MediaError` instead.
- [`embed_videos`] runs `model.get_video_features` on those batches.

Workers decode; the main process holds the batches the DataLoader prefetches and the one being embedded.
"""

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers.feature_extraction_utils import BatchFeature

from .fast_inference import DEFAULT_ENCODER_PRECISION, EncoderPrecision, prepare_for_inference
from .feature_cache import FeatureCache, FeatureCacheWriter
from .fingerprints import files_fingerprint, tensor_fingerprint
from .modeling_avigate import AvigateModel, AvigateVideoOutput
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


@dataclass
class VideoBatch:
    """One batch from [`video_batches`]: model inputs on the device (`None` when every row was skipped), the dataset
    positions of the rows, and the rows skipped."""

    inputs: BatchFeature | None
    positions: torch.Tensor
    skipped: list[SkippedVideo]


def video_batches(
    processor: AvigateProcessor,
    videos: Any,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    strict: bool = False,
    progress: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    frame_cache: FeatureCache | None = None,
    audio_cache: FeatureCache | None = None,
    desc: str = "decoding videos",
) -> Iterator[VideoBatch]:
    """Decode `videos` in `num_workers` DataLoader processes and yield their inputs batch by batch, in order.

    Unusable files are skipped: each batch lists its own, and a summary of all of them is logged at the end. With
    `strict=True` the first one raises its [`MediaError`] (in the main process, so the class survives workers).
    Floating inputs are cast to `dtype` when given.
    """
    dataset = VideoDataset(processor, videos, frame_cache=frame_cache, audio_cache=audio_cache)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=VideoCollator(processor))
    all_skipped: list[SkippedVideo] = []
    with tqdm(total=len(dataset), desc=desc, unit="video", disable=not progress) as bar:
        for batch in loader:
            positions, skipped = batch.pop("positions"), batch.pop("skipped")
            if strict and skipped:
                raise skipped[0].to_error()
            all_skipped.extend(skipped)
            inputs = batch.to(device, dtype) if dtype is not None else batch.to(device)
            yield VideoBatch(inputs if len(positions) else None, positions, skipped)
            bar.update(len(positions) + len(skipped))
    report_skipped(all_skipped, len(dataset), desc)


@dataclass
class EmbeddedBatch:
    """One batch from [`embed_videos`]: the model's output for the rows kept (`None` when every row was skipped;
    tensors stay on the model's device), their dataset positions, their `has_audio`, and the rows skipped."""

    outputs: AvigateVideoOutput | None
    positions: torch.Tensor
    has_audio: torch.Tensor
    skipped: list[SkippedVideo]


@torch.no_grad()
def embed_videos(
    model: AvigateModel,
    processor: AvigateProcessor,
    videos: Any,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    strict: bool = False,
    progress: bool = True,
    frame_cache: FeatureCache | None = None,
    audio_cache: FeatureCache | None = None,
    desc: str = "embedding videos",
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION,
) -> Iterator[EmbeddedBatch]:
    """Embed `videos` (paths, or rows with a `video` column) with `model.get_video_features`, batch by batch.

    The model runs in eval mode on its own device and dtype. Unusable files are skipped and listed (see
    [`video_batches`]); `strict=True` raises the first one's [`MediaError`]. `encoder_precision` (`"fp32"`, `"int8"`
    or `"int8-audio"` on CPU, `"bf16"` on GPU) sets the precision of the frozen vision and audio encoders (see
    [`~fast_inference.prepare_for_inference`]); `model` itself is left unchanged.

    Example (`model` and `processor` loaded beforehand):

    ```python
    >>> embeds = []
    >>> for batch in embed_videos(model, processor, ["a.mp4", "b.mp4"], batch_size=2):  # doctest: +SKIP
    ...     if batch.outputs is not None:
    ...         embeds.append(batch.outputs.pooler_output.cpu())
    ```
    """
    # Inputs meet the caller's model's device and dtype; the encoder copies cast what they need themselves.
    device, dtype = model.device, model.dtype
    model = prepare_for_inference(model, encoder_precision)
    batches = video_batches(
        processor, videos, batch_size=batch_size, num_workers=num_workers, strict=strict, progress=progress,
        device=device, dtype=dtype, frame_cache=frame_cache, audio_cache=audio_cache, desc=desc,
    )
    for batch in batches:
        outputs = None if batch.inputs is None else model.get_video_features(**batch.inputs)
        has_audio = batch.inputs["has_audio"].bool().cpu() if batch.inputs is not None else torch.zeros(0, dtype=bool)
        yield EmbeddedBatch(outputs, batch.positions, has_audio, batch.skipped)


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


def unique_videos(video_views: Sequence[Any]) -> dict[str, list[str]]:
    """The rows (`video_id`, `video`) of one or several `videos` views, each video once."""
    paths: dict[str, str] = {}
    for view in video_views:
        for video_id, path in zip(view["video_id"], view["video"]):
            paths.setdefault(video_id, path)
    return {"video_id": list(paths), "video": list(paths.values())}


def videos_fingerprint(rows: Mapping[str, list[str]]) -> str:
    """The videos a cache is built from (`video_id`, `video` rows): each one's id, size and modification time, so a
    video rewritten in place (a regenerated benchmark) makes every cache built from it stale."""
    return files_fingerprint(sorted(zip(rows["video_id"], rows["video"])))


def frame_cache_fingerprint(processor: AvigateProcessor, videos: str) -> str:
    """Decoded frames depend on the videos (their [`videos_fingerprint`]) and the processor's settings."""
    return tensor_fingerprint({}, {"frames": processor.to_dict(), "videos": videos})


def audio_cache_fingerprint(
    model: AvigateModel, processor: AvigateProcessor, videos: str,
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION,
) -> str:
    """The frozen AST's states depend on the videos (their [`videos_fingerprint`]), the AST's weights (all but the
    trainable final LayerNorm), the fbank settings and the precision it ran at."""
    weights = {name: tensor for name, tensor in model.audio_model.state_dict().items()
               if not name.startswith("layernorm.")}
    settings = {"audio": processor.feature_extractor.to_dict(), "videos": videos}
    if encoder_precision != "fp32":
        settings["encoder_precision"] = encoder_precision
    return tensor_fingerprint(weights, settings)


@torch.no_grad()
def prepare_feature_caches(
    model: AvigateModel,
    processor: AvigateProcessor,
    video_views: Sequence[Any],
    frame_cache: str | None = None,
    audio_cache: str | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    strict: bool = False,
    open_only: bool = False,
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION,
) -> dict[str, FeatureCache]:
    """Open the requested caches, building the missing ones in a single decoding pass over every video.

    `frames` holds normalised frames, masks and `has_audio` (fp16); `audio` holds the frozen AST's token states
    before its final LayerNorm and `has_audio`, computed at `encoder_precision` (`"fp32"`, `"int8"` or
    `"int8-audio"` on CPU, `"bf16"` on GPU; part of the cache's fingerprint when not fp32). Unusable files are skipped
    and listed (they stay out of the cache);
    `strict=True` stops at the first. With `open_only` nothing is built (other processes of a run).
    """
    rows = unique_videos(video_views)
    videos = videos_fingerprint(rows)
    wanted = {kind: (directory, fingerprint) for kind, directory, fingerprint in (
        ("frames", frame_cache, frame_cache_fingerprint(processor, videos) if frame_cache else None),
        ("audio", audio_cache,
         audio_cache_fingerprint(model, processor, videos, encoder_precision) if audio_cache else None),
    ) if directory}
    caches, missing = {}, {}
    for kind, (directory, fingerprint) in wanted.items():
        try:
            caches[kind] = FeatureCache.open(directory, fingerprint)
        except (FileNotFoundError, ValueError):
            if open_only:
                raise
            missing[kind] = (directory, fingerprint)
    if not missing:
        return caches
    writers = {kind: FeatureCacheWriter(directory, len(rows["video"]), fingerprint)
               for kind, (directory, fingerprint) in missing.items()}
    was_training = model.training
    encoder = prepare_for_inference(model, encoder_precision)
    for batch in video_batches(processor, rows, batch_size=batch_size, num_workers=num_workers, strict=strict,
                               device=device, desc=f"caching {' and '.join(missing)}"):
        if batch.inputs is None:
            continue
        video_ids = [rows["video_id"][position] for position in batch.positions.tolist()]
        if "frames" in writers:
            writers["frames"].add(video_ids, {name: batch.inputs[name].cpu() for name in ("pixel_values",
                                                                                          "video_mask", "has_audio")})
        if "audio" in writers:
            hidden = encoder.get_audio_hidden_states(batch.inputs["input_values"].to(model.dtype))
            writers["audio"].add(video_ids, {"audio_hidden_states": hidden, "has_audio": batch.inputs["has_audio"]})
    model.train(was_training)
    caches.update({kind: writer.close() for kind, writer in writers.items()})
    return caches


__all__ = [
    "EmbeddedBatch",
    "SkippedVideo",
    "TrainingPairs",
    "VideoBatch",
    "VideoCollator",
    "VideoDataset",
    "collate_training_pairs",
    "embed_videos",
    "prepare_feature_caches",
    "report_skipped",
    "video_batches",
    "video_rows",
]
