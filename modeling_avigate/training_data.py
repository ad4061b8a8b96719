"""Datasets that feed AVIGATE's training and evaluation from a benchmark's rows, decoding media or reading caches."""

import logging
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .fast_inference import DEFAULT_ENCODER_PRECISION, EncoderPrecision, prepare_for_inference
from .feature_cache import FeatureCache, FeatureCacheWriter, tensor_fingerprint


logger = logging.getLogger(__name__)

VIDEO_INPUTS = ("pixel_values", "video_mask", "input_values", "has_audio")


class VideoFeatureDataset(Dataset):
    """One item per video: the model's video inputs, read from feature caches where given, else decoded.

    With an audio cache the item carries `audio_hidden_states` (the frozen AST's output) instead of `input_values`.
    """

    def __init__(
        self,
        video_ids: Sequence[str],
        paths: Sequence[str],
        processor,
        frame_cache: FeatureCache | None = None,
        audio_cache: FeatureCache | None = None,
        skip_errors: bool = False,
    ):
        self.skip_errors = skip_errors
        self.video_ids = list(video_ids)
        self.paths = list(paths)
        self.processor = processor
        self.frame_cache = frame_cache
        self.audio_cache = audio_cache

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        if not self.skip_errors:
            return self.read(index)
        try:
            return self.read(index)
        except (OSError, ValueError, RuntimeError) as error:
            return {"video_id": self.video_ids[index], "error": f"{self.paths[index]}: {error}"}

    def read(self, index: int) -> dict:
        video_id = self.video_ids[index]
        if (self.frame_cache is not None and video_id not in self.frame_cache) or (
            self.audio_cache is not None and video_id not in self.audio_cache
        ):
            raise ValueError(f"{self.paths[index]} is missing from the feature cache (it failed to decode when the "
                             "cache was built)")
        features: dict = {"video_id": video_id}
        if self.frame_cache is not None and self.audio_cache is not None:
            features.update(self.frame_cache.get(video_id))
        else:
            decoded = self.processor.process_video(self.paths[index])
            features.update({name: torch.as_tensor(decoded[name]) for name in VIDEO_INPUTS})
            if self.frame_cache is not None:
                features.update(self.frame_cache.get(video_id))
        if self.audio_cache is not None:
            features.pop("input_values", None)
            features.update(self.audio_cache.get(video_id))
        features["pixel_values"] = features["pixel_values"].float()
        return features


def stack_video_features(items: Sequence[dict]) -> dict:
    """Stack per-video items into a batch (all items share the processor's frame count); failed items are listed
    under `errors` instead."""
    errors = [item["error"] for item in items if "error" in item]
    items = [item for item in items if "error" not in item]
    batch = {"video_id": [item["video_id"] for item in items], "errors": errors}
    if not items:
        return batch
    for name in items[0]:
        if name != "video_id":
            batch[name] = torch.stack([torch.as_tensor(item[name]) for item in items])
    return batch


class PairDataset(Dataset):
    """(caption, video) training pairs. A video that fails to decode is replaced by the next pair and counted,
    so every contrastive batch keeps its size; with `strict=True` the failure stops the run instead."""

    def __init__(self, pairs, processor, frame_cache=None, audio_cache=None, strict: bool = False):
        self.captions = list(pairs["caption"])
        self.videos = VideoFeatureDataset(pairs["video_id"], pairs["video"], processor, frame_cache, audio_cache)
        self.strict = strict
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self)):
            position = (index + attempt) % len(self)
            try:
                item = self.videos[position]
            except (OSError, ValueError, RuntimeError) as error:
                if self.strict:
                    raise
                path = self.videos.paths[position]
                if path not in self.skipped:
                    self.skipped[path] = str(error)
                    logger.warning("skipping unreadable video %s (%d so far): %s", path, len(self.skipped), error)
                continue
            item["caption"] = self.captions[position]
            return item
        raise RuntimeError("no video of the training set could be decoded")


def collate_pairs(processor):
    """Collate function: tokenise the captions of a batch together and stack the video inputs."""

    def collate(items: Sequence[dict]) -> dict:
        text = processor(text=[item.pop("caption") for item in items], return_tensors="pt")
        batch = stack_video_features(items)
        batch.pop("video_id")
        batch.pop("errors")
        batch["input_ids"] = text["input_ids"]
        batch["attention_mask"] = text["attention_mask"]
        return batch

    return collate


def unique_videos(video_views) -> tuple[list[str], list[str]]:
    """Video ids and paths of one or several `videos` views, each video once."""
    paths: dict[str, str] = {}
    for view in video_views:
        for video_id, path in zip(view["video_id"], view["video"]):
            paths.setdefault(video_id, path)
    return list(paths), list(paths.values())


def video_batches(dataset: VideoFeatureDataset, batch_size: int, num_workers: int, desc: str, strict: bool = False):
    """Batches of decodable videos; unreadable ones are reported once at the end (or raise with `strict`)."""
    dataset.skip_errors = not strict
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_video_features)
    errors = []
    for batch in tqdm(loader, desc=desc, leave=False):
        errors.extend(batch["errors"])
        if batch["video_id"]:
            yield batch
    if errors:
        logger.warning("%s: skipped %d unreadable videos:\n  %s", desc, len(errors), "\n  ".join(errors))


def frame_cache_fingerprint(processor) -> str:
    """Decoded frames depend only on the processor's settings."""
    return tensor_fingerprint({}, {"frames": processor.to_dict()})


def audio_cache_fingerprint(model, processor, encoder_precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION) -> str:
    """The frozen AST's states depend on its weights (all but the trainable final LayerNorm), the fbank settings and
    the precision it ran at (fp32 caches keep the fingerprint they had before precisions existed)."""
    weights = {name: tensor for name, tensor in model.audio_model.state_dict().items() if not name.startswith("layernorm.")}
    settings = {"audio": processor.feature_extractor.to_dict()}
    if encoder_precision != "fp32":
        settings["encoder_precision"] = encoder_precision
    return tensor_fingerprint(weights, settings)


@torch.no_grad()
def prepare_feature_caches(
    model,
    processor,
    video_views,
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
    before its final LayerNorm and `has_audio`, computed at `encoder_precision` (`"fp32"`, `"int8"` on CPU, `"bf16"`
    on GPU; part of the cache's fingerprint). With `open_only` nothing is built (other processes of a run).
    """
    wanted = {kind: (directory, fingerprint) for kind, directory, fingerprint in (
        ("frames", frame_cache, frame_cache_fingerprint(processor) if frame_cache else None),
        ("audio", audio_cache, audio_cache_fingerprint(model, processor, encoder_precision) if audio_cache else None),
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
    video_ids, paths = unique_videos(video_views)
    writers = {kind: FeatureCacheWriter(directory, len(video_ids), fingerprint)
               for kind, (directory, fingerprint) in missing.items()}
    was_training = model.training
    encoder = prepare_for_inference(model, encoder_precision)
    dataset = VideoFeatureDataset(video_ids, paths, processor)
    for batch in video_batches(dataset, batch_size, num_workers, f"caching {' and '.join(missing)}", strict):
        if "frames" in writers:
            writers["frames"].add(batch["video_id"], {name: batch[name] for name in ("pixel_values", "video_mask",
                                                                                     "has_audio")})
        if "audio" in writers:
            hidden = encoder.get_audio_hidden_states(batch["input_values"].to(device))
            writers["audio"].add(batch["video_id"], {"audio_hidden_states": hidden, "has_audio": batch["has_audio"]})
    model.train(was_training)
    caches.update({kind: writer.close() for kind, writer in writers.items()})
    return caches
