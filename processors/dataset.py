# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""A torch `Dataset` that decodes videos in DataLoader workers, and the collator that batches its items."""

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature

from .processing_avigate import AvigateProcessor


# What a broken or missing file raises from `AvigateProcessor.process_video` (FileNotFoundError is an OSError).
MEDIA_ERRORS = (OSError, ValueError, RuntimeError)


class AvigateVideoDataset(torch.utils.data.Dataset):
    """Videos (and optionally one caption per video) decoded by `processor.process_video` inside `__getitem__`, so
    `DataLoader(num_workers=k)` decodes `k` files at a time. Use with [`AvigateCollator`].

    Args:
        processor: the [`AvigateProcessor`] that decodes and normalises each video.
        videos: video file paths.
        texts: one caption per video (a video with several captions appears once per caption), or `None` for a
            video-only dataset (gallery indexing).
        on_error: `"raise"` stops at the first unreadable file; `"skip"` returns an error record instead, which the
            collator drops and reports in the batch's `errors`, so the loop can count and log bad files.

    Example (`processor` and `model` loaded beforehand):

    ```python
    from torch.utils.data import DataLoader

    dataset = AvigateVideoDataset(processor, ["a.mp4", "b.mp4"], ["a dog", "a cat"], on_error="skip")
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=AvigateCollator(processor))
    skipped = []
    for batch in loader:
        skipped += batch.pop("errors")  # [(index, "FileNotFoundError: ..."), ...]
        indices = batch.pop("indices")  # dataset positions of the rows kept
        outputs = model(**batch)
    ```
    """

    def __init__(
        self,
        processor: AvigateProcessor,
        videos: Sequence[str | os.PathLike],
        texts: Sequence[str] | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ):
        if texts is not None and len(texts) != len(videos):
            raise ValueError(f"`texts` has {len(texts)} items but `videos` has {len(videos)}.")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"`on_error` must be 'raise' or 'skip', got {on_error!r}.")
        self.processor = processor
        self.videos = list(videos)
        self.texts = None if texts is None else list(texts)
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            item: dict[str, Any] = self.processor.process_video(self.videos[index])
        except MEDIA_ERRORS as error:
            if self.on_error == "raise":
                raise
            return {"index": index, "error": f"{type(error).__name__}: {error}"}
        item["index"] = index
        if self.texts is not None:
            item["text"] = self.texts[index]
        return item


class AvigateCollator:
    """Batch [`AvigateVideoDataset`] items: stack the video arrays, tokenise the captions, drop failed items.

    The returned [`BatchFeature`] (torch tensors) holds the model inputs plus `indices` (dataset positions of the
    rows, a LongTensor) and `errors` (a list of `(index, message)` for the items skipped); pop those two before
    calling the model. A batch whose items all failed has zero rows and no caption tensors.
    """

    def __init__(self, processor: AvigateProcessor):
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> BatchFeature:
        kept = [item for item in items if "error" not in item]
        errors = [(item["index"], item["error"]) for item in items if "error" in item]
        keys = ("pixel_values", "video_mask", "input_values", "has_audio")
        if kept:
            data = {key: np.stack([item[key] for item in kept]) for key in keys}
        else:
            data = self._empty_video_batch()
        data["indices"] = np.asarray([item["index"] for item in kept], dtype=np.int64)
        texts = [item["text"] for item in kept if "text" in item]
        if texts:
            encoding = self.processor(text=texts, return_tensors="np")
            data.update(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])
        batch = BatchFeature(data, tensor_type="pt")
        # Set after the tensor conversion, which would try to turn the messages into tensors.
        batch["errors"] = errors
        return batch

    def _empty_video_batch(self) -> dict[str, np.ndarray]:
        processor = self.processor
        _, (height, width), _ = processor._frame_geometry()
        extractor = processor.feature_extractor
        return {
            "pixel_values": np.zeros((0, processor.num_frames, 3, height, width), dtype=np.float32),
            "video_mask": np.zeros((0, processor.num_frames), dtype=np.int64),
            "input_values": np.zeros((0, extractor.max_length, extractor.num_mel_bins), dtype=np.float32),
            "has_audio": np.zeros(0, dtype=bool),
        }
