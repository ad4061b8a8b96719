# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Processor of AVIGATE: video files (frames + sound track) and captions to model inputs."""

from typing import Any

import numpy as np
from huggingface_hub.errors import StrictDataclassError
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, Unpack
from transformers.video_processing_utils import VideoProcessorMixin

from .video_processing_avigate import AvigateVideoInput, AvigateVideosKwargs


class AvigateProcessorKwargs(ProcessingKwargs, total=False):
    """Keyword arguments of [`AvigateProcessor.__call__`]: `text_kwargs` go to the tokenizer, `videos_kwargs` to the
    video processor, `audio_kwargs` (`sampling_rate`) to the feature extractor; flat keywords go to the part that
    accepts them."""

    videos_kwargs: AvigateVideosKwargs


class AvigateProcessor(ProcessorMixin):
    r"""
    Turns captions and videos into AVIGATE inputs: CLIP tokens, sampled and normalised frames with a frame mask, and
    the log-mel features of each video's sound track, read in the same decoding pass as its frames.

    Args:
        feature_extractor ([`AvigateFeatureExtractor`]): log-mel features; also says how sound tracks are decoded.
        video_processor ([`AvigateVideoProcessor`]): frame sampling, geometry and normalisation.
        tokenizer (`CLIPTokenizer`): captions are padded to and truncated at its `model_max_length` (32 for
            AVIGATE's MSR-VTT recipe, 64 for Charades), EOS kept.

    Example:

    ```python
    >>> from modeling_avigate.processors import AvigateProcessor
    >>> processor = AvigateProcessor.from_pretrained("path/to/avigate-checkpoint")  # doctest: +SKIP
    >>> batch = processor(text=["a dog barks at a car"], videos=["clip.mp4"], return_tensors="pt")  # doctest: +SKIP
    >>> batch["pixel_values"].shape, batch["input_values"].shape  # doctest: +SKIP
    (torch.Size([1, 12, 3, 224, 224]), torch.Size([1, 1024, 128]))
    ```
    """

    valid_processor_kwargs = AvigateProcessorKwargs
    text_kwargs = {"padding": "max_length", "truncation": True}

    def __init__(self, feature_extractor=None, video_processor=None, tokenizer=None, **kwargs):
        super().__init__(feature_extractor, video_processor, tokenizer, **kwargs)

    @classmethod
    def get_processor_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        processor_dict, kwargs = super().get_processor_dict(pretrained_model_name_or_path, **kwargs)
        if "image_processor" in processor_dict:
            raise ValueError(f"{pretrained_model_name_or_path}: saved before AvigateVideoProcessor existed (its "
                             "processor_config.json has `image_processor`, no `video_processor`); create it again "
                             "with AvigateProcessor(AvigateFeatureExtractor(), AvigateVideoProcessor(...), tokenizer).")
        return processor_dict, kwargs

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> type:
        # transformers looks `VideoProcessorMixin` up by name among its top-level exports, which hold it only where
        # torchvision is installed: check the video processor against the class itself.
        if argument_name != "video_processor":
            return super().check_argument_for_proper_class(argument_name, argument)
        if not isinstance(argument, VideoProcessorMixin):
            raise TypeError(f"Received a {type(argument).__name__} for argument video_processor, but a "
                            "VideoProcessorMixin was expected.")
        return VideoProcessorMixin

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: AvigateVideoInput | list[AvigateVideoInput] | None = None,
        audio: np.ndarray | list[np.ndarray | None] | None = None,
        **kwargs: Unpack[AvigateProcessorKwargs],
    ) -> BatchFeature:
        """Tokenise captions and/or read videos into one batch: `input_ids`, `attention_mask` (from `text`),
        `pixel_values`, `video_mask` (from `videos`), `input_values`, `has_audio` (from `videos` or `audio`).

        Args:
            text: a caption or a list of captions.
            videos: a video or a list of videos (see [`AvigateVideoProcessor.preprocess`]); each file's sound track
                is read in the same pass unless `audio` is given.
            audio: one waveform per video, `None` for "no sound" (see [`AvigateFeatureExtractor.__call__`]);
                requires `sampling_rate`.
            kwargs: `return_tensors`, `sampling_rate`, tokenizer keywords and video settings, flat or grouped as
                `text_kwargs=`, `videos_kwargs=`, `audio_kwargs=`. Unknown keywords are ignored with a warning.

        Raises:
            MediaError: a video file cannot be used. ValueError: a malformed argument (named). TypeError: `images`.
        """
        if "images" in kwargs or "images_kwargs" in kwargs:
            raise TypeError("AvigateProcessor takes `videos` (files, frame arrays or lists of PIL images), not "
                            "`images`; frame settings go in `videos_kwargs`.")
        if text is None and videos is None and audio is None:
            raise ValueError("Pass at least one of `text`, `videos` or `audio`.")
        if isinstance(audio, np.ndarray):
            audio = [audio]
        try:
            output_kwargs = self._merge_kwargs(
                AvigateProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
            )
        except StrictDataclassError as error:  # a typed keyword of the wrong type: report it as a bad argument
            raise ValueError(str(error)) from error
        return_tensors = output_kwargs["text_kwargs"].pop("return_tensors", None)
        sampling_rate = output_kwargs["audio_kwargs"].get("sampling_rate")
        if audio is not None and sampling_rate is None:  # guessing a rate would give wrong features
            raise ValueError("`sampling_rate` (the rate of the `audio` waveforms in Hz) is required with `audio`.")
        data: dict[str, Any] = {}
        if text is not None:
            if not isinstance(text, str) and not (isinstance(text, list) and all(isinstance(t, str) for t in text)):
                raise ValueError("`text` must be a string or a list of strings.")
            data.update(self.tokenizer([text] if isinstance(text, str) else text, **output_kwargs["text_kwargs"]))
        if videos is not None:
            sound_track = self.feature_extractor.sound_track_kwargs() if audio is None else None
            videos_kwargs = {**output_kwargs["videos_kwargs"], "return_tensors": "np"}
            frames = self.video_processor(videos, sound_track=sound_track, **videos_kwargs)
            data.update(pixel_values=frames["pixel_values"], video_mask=frames["video_mask"])
            if audio is None:
                audio, sampling_rate = frames["audio"], None
            elif len(audio) != len(frames["video_mask"]):
                raise ValueError(f"`audio` has {len(audio)} items but `videos` has {len(frames['video_mask'])}; pass "
                                 "one per video.")
        if audio is not None:
            data.update(self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="np"))
        return BatchFeature(data, tensor_type=return_tensors)

    def process_video(
        self, video: AvigateVideoInput, audio: np.ndarray | None = None, sampling_rate: int | None = None
    ) -> dict[str, np.ndarray]:
        """Model inputs of one video as unbatched numpy arrays (what a DataLoader worker computes per item); `audio`
        replaces the file's sound track."""
        audio_kwargs = {} if audio is None else {"audio": [audio], "sampling_rate": sampling_rate}
        batch = self(videos=[video], return_tensors="np", **audio_kwargs)
        return {key: value[0] for key, value in batch.items()}


__all__ = ["AvigateProcessor"]
