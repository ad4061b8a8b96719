# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The one way videos and texts become embeddings: the search index, evaluation and the benchmarks all call this.

- [`EmbeddingOptions`]: how a video collection is embedded (batch size, decoding workers, strictness, progress bar,
  encoder precision, feature caches), one object instead of a keyword list on every caller.
- [`embed_videos`]: a video collection → [`VideoEmbeddings`] batch by batch (what the index streams to disk);
  [`embed_gallery`]: the same, concatenated (what evaluation scores).
- [`embed_files`]: a list of files → one [`EmbeddedFile`] per file, cut into timed segments (or whole), each
  segment embedded exactly as `get_video_features` embeds a clip, with the decoder's frame times, duration and
  poster frames from the same single pass over the file (what the search index stores).
- [`embed_texts`]: captions → normalised text embeddings.
- [`video_batches`]: the decoded inputs of a collection, batch by batch on a device, which the above embed and
  [`prepare_feature_caches`] stores for training (decoded frames, the frozen AST's states).

Workers decode (`modeling_avigate.pipeline`'s [`VideoDataset`]); the main process holds the batches the DataLoader
prefetches and the one being embedded.

Example (`model` and `processor` loaded beforehand):

```python
>>> gallery = embed_gallery(model, processor, ["a.mp4", "b.mp4"], EmbeddingOptions(batch_size=2))  # doctest: +SKIP
>>> model.similarity(embed_texts(model, processor, ["a dog"]), gallery.frame_embeds, gallery.video_mask)  # doctest: +SKIP
```
"""

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.feature_extraction_utils import BatchFeature

from .fast_inference import DEFAULT_ENCODER_PRECISION, EncoderPrecision, prepare_for_inference
from .feature_cache import FeatureCache, FeatureCacheWriter
from .fingerprints import files_fingerprint, tensor_fingerprint
from .modeling_avigate import AvigateModel
from .pipeline import VIDEO_INPUTS, SkippedVideo, VideoCollator, VideoDataset, report_skipped
from .isolated_decoding import decode_isolated
from .processors import AvigateProcessor, DecodeSettings, MediaError, VideoSegment, decode_segments


@dataclass(frozen=True)
class EmbeddingOptions:
    """How a video collection is embedded.

    Args:
        batch_size: videos per forward pass.
        num_workers: DataLoader processes that decode in parallel (0: in this process).
        strict: raise the first unusable file's `MediaError` instead of skipping and listing it.
        progress: show a progress bar.
        encoder_precision: `"fp32"`, `"int8"` or `"int8-audio"` (CPU), `"bf16"` (GPU) for the frozen vision and audio
            encoders (see [`~fast_inference.prepare_for_inference`]); the model itself is left unchanged.
        frame_cache, audio_cache: feature caches to read decoded frames / the frozen AST's states from, keyed by
            video id (training and evaluation on benchmarks).
        segment_seconds, stride_seconds: [`embed_files`] cuts each file into segments of `segment_seconds`
            starting every `stride_seconds` (default: `segment_seconds`, no overlap); `None` embeds each file
            whole. A file not longer than a segment is one segment.
    """

    batch_size: int = 8
    num_workers: int = 0
    strict: bool = False
    progress: bool = True
    encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION
    frame_cache: FeatureCache | None = None
    audio_cache: FeatureCache | None = None
    segment_seconds: float | None = None
    stride_seconds: float | None = None


@dataclass
class VideoEmbeddings:
    """Embedded videos of a collection, on the CPU, in collection order: a batch from [`embed_videos`] or a whole
    gallery from [`embed_gallery`].

    Attributes:
        positions: `[N]` rows of the collection that were embedded.
        video_ids, paths: of those rows (the id is the path for a plain list of paths).
        frame_embeds: fused, L2-normalised frame embeddings `[N, T, D]` (float32).
        video_mask: `[N, T]` bool, True for real frames.
        video_embeds: global embeddings `[N, D]` (the model's `pooler_output`, float32).
        attn_gates, ffn_gates: the fusion layers' audio gates `[N, L]` (float32).
        has_audio: `[N]` bool.
        skipped: the rows whose file could not be used, with the reason.
    """

    positions: torch.Tensor
    video_ids: list[str]
    paths: list[str]
    frame_embeds: torch.Tensor
    video_mask: torch.Tensor
    video_embeds: torch.Tensor
    attn_gates: torch.Tensor
    ffn_gates: torch.Tensor
    has_audio: torch.Tensor
    skipped: list[SkippedVideo] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.video_ids)

    def select(self, row: int) -> "VideoEmbeddings":
        """Row `row` alone (its skipped list empty)."""
        values = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "skipped"}
        return VideoEmbeddings(**{name: value[row : row + 1] for name, value in values.items()})

    @classmethod
    def concat(cls, parts: Sequence["VideoEmbeddings"]) -> "VideoEmbeddings":
        """All `parts` end to end (at least one)."""
        joined = {}
        for item in fields(cls):
            values = [getattr(part, item.name) for part in parts]
            joined[item.name] = torch.cat(values) if isinstance(values[0], torch.Tensor) else sum(values, [])
        return cls(**joined)


@dataclass
class VideoBatch:
    """One batch from [`video_batches`]: model inputs on the device (`None` when every row was skipped), the
    collection rows kept (`positions`, their `video_ids` and `paths`), and the rows skipped."""

    inputs: BatchFeature | None
    positions: torch.Tensor
    video_ids: list[str]
    paths: list[str]
    skipped: list[SkippedVideo]


def video_batches(
    processor: AvigateProcessor,
    videos: Any,
    options: EmbeddingOptions = EmbeddingOptions(),
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    desc: str = "decoding videos",
) -> Iterator[VideoBatch]:
    """Decode `videos` in `options.num_workers` DataLoader processes (or read them from `options`' feature caches)
    and yield their inputs batch by batch, in order.

    Unusable files are skipped: each batch lists its own, and a summary of all of them is logged at the end. With
    `options.strict` the first one raises its [`MediaError`] (in the main process, so the class survives workers).
    Floating inputs are cast to `dtype` when given.
    """
    dataset = VideoDataset(processor, videos, frame_cache=options.frame_cache, audio_cache=options.audio_cache)
    loader = DataLoader(dataset, batch_size=options.batch_size, num_workers=options.num_workers,
                        collate_fn=VideoCollator(processor))
    all_skipped: list[SkippedVideo] = []
    with tqdm(total=len(dataset), desc=desc, unit="video", disable=not options.progress) as bar:
        for batch in loader:
            positions, skipped = batch.pop("positions"), batch.pop("skipped")
            if options.strict and skipped:
                raise skipped[0].to_error()
            all_skipped.extend(skipped)
            inputs = batch.to(device, dtype) if dtype is not None else batch.to(device)
            rows = positions.tolist()
            yield VideoBatch(inputs if rows else None, positions, [dataset.video_ids[row] for row in rows],
                             [dataset.paths[row] for row in rows], skipped)
            bar.update(len(rows) + len(skipped))
    report_skipped(all_skipped, len(dataset), desc)


def video_features(model: AvigateModel, inputs: Mapping[str, torch.Tensor]):
    """`model.get_video_features(**inputs)`, with the AST run only on the videos that have a sound track when the
    model closes the gates of the others (`mask_missing_audio`): their fused frames do not depend on what the AST makes
    of an all-zero fbank, which cost a silent file about 60 % of its indexing time."""
    has_audio, input_values = inputs.get("has_audio"), inputs.get("input_values")
    if not model.config.mask_missing_audio or has_audio is None or input_values is None or has_audio.all():
        return model.get_video_features(**inputs)
    visual = {name: value for name, value in inputs.items() if name != "input_values"}
    present = has_audio.bool()
    if not present.any():
        return model.get_video_features(**visual)  # no audio inputs: every gate closed, as for a batch of silent videos
    heard = model.get_audio_hidden_states(input_values[present])
    audio_hidden_states = heard.new_zeros(len(present), *heard.shape[1:])
    audio_hidden_states[present] = heard
    return model.get_video_features(**visual, audio_hidden_states=audio_hidden_states)


@torch.no_grad()
def embed_videos(
    model: AvigateModel,
    processor: AvigateProcessor,
    videos: Any,
    options: EmbeddingOptions = EmbeddingOptions(),
    desc: str = "embedding videos",
) -> Iterator[VideoEmbeddings]:
    """Embed `videos` (paths, or rows with a `video` column and optionally `video_id`) with
    `model.get_video_features`, one [`VideoEmbeddings`] per batch (empty when every row of the batch was skipped).

    The model runs in eval mode on its own device and dtype, at `options.encoder_precision`. Unusable files are
    skipped and listed in each batch's `skipped` (and logged once at the end); `options.strict` raises the first
    one's [`MediaError`] instead. `desc` labels the progress bar.
    """
    # Inputs meet the caller's model's device and dtype; the encoder copies cast what they need themselves.
    device, dtype = model.device, model.dtype
    inference_model = prepare_for_inference(model, options.encoder_precision)
    for batch in video_batches(processor, videos, options, device=device, dtype=dtype, desc=desc):
        if batch.inputs is None:
            yield _no_videos(model, processor, batch.skipped)
            continue
        outputs = video_features(inference_model, batch.inputs)
        yield VideoEmbeddings(
            positions=batch.positions,
            video_ids=batch.video_ids,
            paths=batch.paths,
            frame_embeds=outputs.last_hidden_state.float().cpu(),
            video_mask=outputs.video_mask.bool().cpu(),
            video_embeds=outputs.pooler_output.float().cpu(),
            attn_gates=outputs.attn_gates.float().cpu(),
            ffn_gates=outputs.ffn_gates.float().cpu(),
            has_audio=batch.inputs["has_audio"].bool().cpu(),
            skipped=batch.skipped,
        )


def _no_videos(model: AvigateModel, processor: AvigateProcessor, skipped: list[SkippedVideo]) -> VideoEmbeddings:
    """Zero embedded videos (a batch whose rows were all skipped), with tensors of the right trailing shapes."""
    num_frames, dim = processor.video_processor.num_frames, model.config.projection_dim
    layers = model.config.fusion_num_layers
    return VideoEmbeddings(
        positions=torch.zeros(0, dtype=torch.long), video_ids=[], paths=[],
        frame_embeds=torch.zeros(0, num_frames, dim), video_mask=torch.zeros(0, num_frames, dtype=torch.bool),
        video_embeds=torch.zeros(0, dim), attn_gates=torch.zeros(0, layers), ffn_gates=torch.zeros(0, layers),
        has_audio=torch.zeros(0, dtype=torch.bool), skipped=skipped,
    )


def embed_gallery(
    model: AvigateModel,
    processor: AvigateProcessor,
    videos: Any,
    options: EmbeddingOptions = EmbeddingOptions(),
    desc: str = "embedding videos",
) -> VideoEmbeddings:
    """Every usable video of `videos` embedded ([`embed_videos`], concatenated). Raises `ValueError` when none
    could be used."""
    parts = list(embed_videos(model, processor, videos, options, desc))
    gallery = VideoEmbeddings.concat(parts) if parts else None
    if gallery is None or not len(gallery):
        reason = f": {gallery.skipped[0]}" if gallery is not None and gallery.skipped else ""
        raise ValueError(f"none of the videos could be used{reason}")
    return gallery


# Longer side in pixels of the poster frame the decoder returns per segment: four columns of search results fit a
# laptop screen at this size.
POSTER_SIZE = 240


@dataclass
class EmbeddedFile:
    """One file embedded by [`embed_files`]: its segments in time order, everything the decoder learnt about it in
    the same pass, and their embeddings.

    Attributes:
        path: the file.
        duration: its length in seconds.
        starts, ends: `[S]` float64 span of each segment in seconds on the file's timeline.
        frame_times: `[S, T]` float32 presentation time of each embedded frame (NaN for padding).
        posters: `S` upright RGB uint8 frames (the middle embedded frame of each segment, longer side
            [`POSTER_SIZE`]).
        embeddings: one row per segment ([`VideoEmbeddings`]; `positions` are segment numbers).
    """

    path: str
    duration: float
    starts: torch.Tensor
    ends: torch.Tensor
    frame_times: torch.Tensor
    posters: list[np.ndarray]
    embeddings: VideoEmbeddings


def decode_settings(processor: AvigateProcessor, options: EmbeddingOptions) -> DecodeSettings:
    """The processor's frame and sound settings as [`decode_segments`] takes them, cut as `options` says."""
    return DecodeSettings(
        **processor.video_processor.decoder_kwargs(), **processor.feature_extractor.sound_track_kwargs(),
        segment_seconds=options.segment_seconds, stride_seconds=options.stride_seconds, poster_size=POSTER_SIZE,
    )


@dataclass
class _PendingFile:
    """The embedded segments of one file, until its last one is there."""

    path: str
    num_segments: int
    segments: list[VideoSegment] = field(default_factory=list)
    rows: list[VideoEmbeddings] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.num_segments

    def result(self, num_frames: int) -> EmbeddedFile:
        frame_times = torch.full((self.num_segments, num_frames), float("nan"))
        for row, segment in enumerate(self.segments):
            frame_times[row, : len(segment.frame_times)] = torch.from_numpy(segment.frame_times.astype(np.float32))
        return EmbeddedFile(
            path=self.path, duration=float(self.segments[0].duration),
            starts=torch.tensor([segment.start for segment in self.segments], dtype=torch.float64),
            ends=torch.tensor([segment.end for segment in self.segments], dtype=torch.float64),
            frame_times=frame_times, posters=[segment.poster for segment in self.segments],
            embeddings=VideoEmbeddings.concat(self.rows),
        )


def segment_inputs(processor: AvigateProcessor, segment: VideoSegment) -> dict[str, torch.Tensor]:
    """The model inputs of one decoded segment: its frames and its own sound through the processor, as a clip."""
    audio = {}
    if segment.audio is not None:
        audio = {"audio": segment.audio, "sampling_rate": processor.feature_extractor.sampling_rate}
    inputs = processor.process_video(segment.frames, **audio)
    return {name: torch.as_tensor(inputs[name]) for name in VIDEO_INPUTS}


def decode_pieces(path: str, settings: DecodeSettings, segments: Mapping[str, slice]) -> Iterator[VideoSegment]:
    """[`decode_segments`] of the segments `segments` names for `path` (all of them for a path it does not name).
    A module-level function, so that `functools.partial` of it reaches spawned decoding workers."""
    return decode_segments(path, settings, segments.get(path))


def decoded(paths: Sequence[str], decode, num_workers: int) -> Iterator[tuple[str, VideoSegment | MediaError]]:
    """`(path, segment)` for every segment of every file in order, then `(path, MediaError)` for a file that
    failed: in `num_workers` crash-isolated child processes, or in this one for 0."""
    if num_workers:
        yield from decode_isolated(paths, decode, num_workers=num_workers)
        return
    for path in paths:
        try:
            for segment in decode(path):
                yield path, segment
        except MediaError as error:
            yield path, error


def non_finite_embedding(path: str, segment: VideoSegment) -> MediaError:
    """The error of a file whose segment embedded to NaN or inf, which would otherwise rank first in every search."""
    return MediaError(path, f"its segment at {segment.start:.2f}-{segment.end:.2f} s embeds to NaN or inf values (the "
                            "file's sound or frames hold invalid samples, or the model overflows at this precision)")


@torch.no_grad()
def embed_files(
    model: AvigateModel,
    processor: AvigateProcessor,
    paths: Sequence[str],
    options: EmbeddingOptions = EmbeddingOptions(),
    desc: str = "indexing videos",
    segments: Mapping[str, slice] | None = None,
) -> Iterator[EmbeddedFile | SkippedVideo]:
    """Embed every file of `paths` segment by segment (`options.segment_seconds`, or whole), opening each file once.
    `segments` limits a file to a contiguous slice of its segments (a process's piece of a long file in a sharded
    build); its [`EmbeddedFile`] then holds those segments only.

    Files are decoded by [`decode_segments`] in `options.num_workers` child processes ([`decode_isolated`]), so a
    decoder that crashes costs its file, not the run; with `num_workers=0` in this process (no start-up cost, but a
    crash in native code then ends the run). Segments of consecutive files
    share a batch (`options.batch_size` segments per forward pass); each segment is one AVIGATE clip (`num_frames`
    frames sampled in its span and the fbank of its own sound) through `model.get_video_features`. Files are yielded
    in order, each as an [`EmbeddedFile`] as soon as its last segment is embedded (so a caller can save it before
    the next one), or as its [`SkippedVideo`] when it cannot be used (listed once in the log at the end; with
    `options.strict` its [`MediaError`] is raised). A file one of whose segments embeds to NaN or inf is refused the
    same way ([`non_finite_embedding`]): stored, it would rank first in every search. The progress bar counts files
    and segments.
    """
    device, dtype = model.device, model.dtype
    inference_model = prepare_for_inference(model, options.encoder_precision)
    decode = functools.partial(decode_pieces, settings=decode_settings(processor, options), segments=segments or {})
    position = {path: i for i, path in enumerate(paths)}
    batch: list[tuple[_PendingFile, dict[str, torch.Tensor]]] = []
    current: _PendingFile | None = None
    skipped: list[SkippedVideo] = []
    failed: set[str] = set()  # files refused for a non-finite embedding: their later segments are not embedded
    decoded_segments = 0

    def skip(error: MediaError) -> SkippedVideo:
        """Drop the file of `error` (its segments still waiting in the batch too); raise instead when strict."""
        if options.strict:
            raise error
        batch[:] = [(file, inputs) for file, inputs in batch if file.path != error.path]
        skipped.append(SkippedVideo(position[error.path], error.path, error.reason))
        bar.update(1)
        return skipped[-1]

    def embed_batch() -> Iterator[EmbeddedFile | SkippedVideo]:
        inputs = BatchFeature({name: torch.stack([item[name] for _, item in batch]) for name in VIDEO_INPUTS})
        outputs = video_features(inference_model, inputs.to(device, dtype))
        rows = VideoEmbeddings(
            positions=torch.tensor([len(file.rows) for file, _ in batch]), video_ids=[file.path for file, _ in batch],
            paths=[file.path for file, _ in batch], frame_embeds=outputs.last_hidden_state.float().cpu(),
            video_mask=outputs.video_mask.bool().cpu(), video_embeds=outputs.pooler_output.float().cpu(),
            attn_gates=outputs.attn_gates.float().cpu(), ffn_gates=outputs.ffn_gates.float().cpu(),
            has_audio=inputs["has_audio"].bool(),
        )
        finite = rows.frame_embeds.isfinite().flatten(1).all(1) & rows.video_embeds.isfinite().all(1)
        pending, batch[:] = list(batch), []
        for row, (file, _) in enumerate(pending):
            if file.path in failed:
                continue
            if not finite[row]:
                failed.add(file.path)
                yield skip(non_finite_embedding(file.path, file.segments[len(file.rows)]))
                continue
            file.rows.append(rows.select(row))
            if file.complete:
                bar.update(1)
                yield file.result(processor.video_processor.num_frames)

    with tqdm(total=len(paths), desc=desc, unit="file", disable=not options.progress) as bar:
        for path, item in decoded(paths, decode, options.num_workers):
            if path in failed:
                continue
            if isinstance(item, MediaError):
                yield skip(item)
                continue
            if current is None or current.path != path:
                current = _PendingFile(path, item.num_segments)
            current.segments.append(item)
            batch.append((current, segment_inputs(processor, item)))
            decoded_segments += 1
            bar.set_postfix(segments=decoded_segments)
            if len(batch) == options.batch_size:
                yield from embed_batch()
        if batch:
            yield from embed_batch()
    report_skipped(skipped, len(paths), desc)

@torch.no_grad()
def embed_texts(model: AvigateModel, processor: AvigateProcessor, texts: Sequence[str],
                batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings `[Nt, D]` (float32, on the CPU); a progress bar only for several batches."""
    model.eval()
    embeds = []
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="embedding texts", leave=False, disable=len(batches) <= 1):
        tokens = processor(text=list(texts[start : start + batch_size]), return_tensors="pt")
        input_ids, attention_mask = tokens["input_ids"].to(model.device), tokens["attention_mask"].to(model.device)
        outputs = model.get_text_features(input_ids, attention_mask)
        embeds.append(outputs.pooler_output.float().cpu())
    return torch.cat(embeds)


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
    options = EmbeddingOptions(batch_size=batch_size, num_workers=num_workers, strict=strict)
    for batch in video_batches(processor, rows, options, device=device, desc=f"caching {' and '.join(missing)}"):
        if batch.inputs is None:
            continue
        if "frames" in writers:
            writers["frames"].add(batch.video_ids, {name: batch.inputs[name].cpu() for name in ("pixel_values",
                                                                                          "video_mask", "has_audio")})
        if "audio" in writers:
            hidden = encoder.get_audio_hidden_states(batch.inputs["input_values"].to(model.dtype))
            writers["audio"].add(batch.video_ids, {"audio_hidden_states": hidden, "has_audio": batch.inputs["has_audio"]})
    model.train(was_training)
    caches.update({kind: writer.close() for kind, writer in writers.items()})
    return caches




__all__ = [
    "EmbeddedFile",
    "EmbeddingOptions",
    "VideoBatch",
    "VideoEmbeddings",
    "audio_cache_fingerprint",
    "decode_settings",
    "embed_files",
    "embed_gallery",
    "embed_texts",
    "embed_videos",
    "frame_cache_fingerprint",
    "non_finite_embedding",
    "prepare_feature_caches",
    "video_batches",
]
