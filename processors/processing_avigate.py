# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Processor of AVIGATE: video files (frames + sound track) and captions to model inputs."""

import copy
import os
from collections.abc import Sequence
from numbers import Integral
from typing import Any, Literal, TypedDict

import av
import numpy as np
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from huggingface_hub.errors import StrictDataclassError
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin, TextKwargs, Unpack
from transformers.utils import TensorType, logging

from .video_io import (
    DEFAULT_MAX_PIXELS,
    PIL_TO_SWSCALE,
    FrameResizer,
    read_video,
    resample_audio,
    sample_frame_indices,
)


logger = logging.get_logger(__name__)

VideoInput = str | os.PathLike | np.ndarray | Sequence[Image.Image]


class AvigateVideosKwargs(TypedDict, total=False):
    """Call-time frame settings; each overrides the processor's (or its image processor's) saved value for one call.

    Attributes:
        num_frames (`int`): frames per video (the processor's `num_frames`).
        fps (`float`, *optional*): sample at this rate first, then `num_frames` uniformly (the processor's
            `sample_fps`).
        size (`dict[str, int]` or `int`): `{"shortest_edge": n}` (an int means the same).
        crop_size (`dict[str, int]` or `int`): `{"height": h, "width": w}` (an int means a square).
        resample (`int`): PIL resampling filter, mapped to FFmpeg's scaler.
        do_rescale, rescale_factor, do_normalize, image_mean, image_std: as in the image processor.
        return_tensors (`str`, *optional*): `"pt"` or `"np"`.
    """

    num_frames: int
    fps: float | None
    size: int | dict[str, int]
    crop_size: int | dict[str, int]
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: float | list[float] | tuple[float, ...]
    image_std: float | list[float] | tuple[float, ...]
    return_tensors: str | TensorType | None


class AvigateAudioKwargs(TypedDict, total=False):
    """Call-time audio settings.

    Attributes:
        sampling_rate (`int`): rate in Hz of the `audio` waveforms passed to the call.
        return_tensors (`str`, *optional*): `"pt"` or `"np"`.
    """

    sampling_rate: int
    return_tensors: str | TensorType | None


class AvigateProcessorKwargs(ProcessingKwargs, total=False):
    """Keyword arguments of [`AvigateProcessor.__call__`]: `text_kwargs` go to the tokenizer, `videos_kwargs` to frame
    decoding, `audio_kwargs` to the sound track; flat keywords are routed to the part that accepts them."""

    text_kwargs: TextKwargs
    videos_kwargs: AvigateVideosKwargs
    audio_kwargs: AvigateAudioKwargs


# Call-time frame settings that live on the image processor rather than on AvigateProcessor itself.
IMAGE_PROCESSOR_SETTINGS = (
    "size", "crop_size", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"
)


class AvigateProcessor(ProcessorMixin):
    r"""
    Turns captions and videos into AVIGATE inputs: CLIP tokens, sampled and normalised frames with a frame mask, and
    the AST log-mel features of each video's sound track.

    Frames follow `image_processor`'s settings (shorter side to `size["shortest_edge"]` with its `resample` filter,
    centre crop to `crop_size`, `rescale_factor`, `image_mean`/`image_std`), computed with FFmpeg's scaler rather than
    PIL. Audio goes through `feature_extractor` (an [`AvigateFeatureExtractor`]) after resampling to its rate.

    Args:
        image_processor (`CLIPImageProcessorPil`): frame geometry and normalisation.
        feature_extractor (`AvigateFeatureExtractor`): log-mel features.
        tokenizer (`CLIPTokenizer`): the CLIP BPE tokenizer.
        num_frames (`int`, defaults to 12): frames per video (32 for Charades); shorter clips are padded and the
            padding is 0 in `video_mask`.
        max_length (`int`, defaults to 32): tokens per caption including BOS and EOS (64 for Charades); longer
            captions are truncated and keep their EOS.
        sample_fps (`float`, *optional*): when set, first take frames at this rate, then `num_frames` uniformly
            among them (the reference's "1 frame per second" loader); by default frames are uniform over the clip.
            Applies to files only: arrays and image lists have no timestamps and are always sampled uniformly.
        audio_channel (`str`, defaults to `"mix"`): `"mix"` averages the channels of multichannel sound, `"first"`
            keeps the first channel (what the reference's torchaudio fbank does).
        decode_threads (`int`, defaults to 1): FFmpeg decoder threads per video; 1 suits DataLoader workers, 0 lets
            FFmpeg choose.
        max_pixels (`int`, defaults to 100_000_000): files whose frames have more pixels are refused with a
            [`MediaError`] before decoding (bounds the memory a single file can take).

    `num_frames`, `sample_fps` (as `fps`), the image processor's frame settings and `max_length` can be overridden for
    one call (see [`~AvigateProcessor.__call__`]).

    Example:

    ```python
    >>> from modeling_avigate.processors import AvigateProcessor
    >>> processor = AvigateProcessor.from_pretrained("path/to/avigate-checkpoint")  # doctest: +SKIP
    >>> batch = processor(text=["a dog barks at a car"], videos=["clip.mp4"], return_tensors="pt")  # doctest: +SKIP
    >>> batch["pixel_values"].shape, batch["input_values"].shape  # doctest: +SKIP
    (torch.Size([1, 12, 3, 224, 224]), torch.Size([1, 1024, 128]))
    ```
    """

    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        num_frames: int = 12,
        max_length: int = 32,
        sample_fps: float | None = None,
        audio_channel: Literal["mix", "first"] = "mix",
        decode_threads: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        **kwargs,
    ):
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1, got {num_frames}.")
        if audio_channel not in ("mix", "first"):
            raise ValueError(f"`audio_channel` must be 'mix' or 'first', got {audio_channel!r}.")
        self.num_frames = num_frames
        self.max_length = max_length
        self.sample_fps = sample_fps
        self.audio_channel = audio_channel
        self.decode_threads = decode_threads
        self.max_pixels = max_pixels
        super().__init__(image_processor, feature_extractor, tokenizer, **kwargs)

    valid_processor_kwargs = AvigateProcessorKwargs

    @property
    def text_kwargs(self) -> dict[str, Any]:
        """Tokenizer defaults: pad to and truncate at `max_length` (the tokenizer adds BOS/EOS after truncating, so EOS
        survives); any call-time text keyword overrides them."""
        return {"padding": "max_length", "truncation": True, "max_length": self.max_length}

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "video_mask", "input_values", "has_audio"]

    def _frame_geometry(self) -> tuple[int, tuple[int, int], str]:
        """`(shortest_edge, (crop_height, crop_width), swscale filter)` from the image processor's settings."""
        size, crop = self.image_processor.size, self.image_processor.crop_size
        shortest_edge = size["shortest_edge"] if "shortest_edge" in size else min(size["height"], size["width"])
        resample = Image.Resampling(int(self.image_processor.resample))
        if resample not in PIL_TO_SWSCALE:
            raise ValueError(f"The image processor's resample filter {resample.name} has no FFmpeg counterpart.")
        return shortest_edge, (crop["height"], crop["width"]), PIL_TO_SWSCALE[resample]

    def _normalize_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 `[n, H, W, 3]` → float32 `[n, 3, H, W]` with the image processor's rescale and mean/std."""
        pixels = frames.astype(np.float32)
        processor = self.image_processor
        if processor.do_rescale:
            pixels *= np.float32(processor.rescale_factor)
        if processor.do_normalize:
            mean, std = np.asarray(processor.image_mean, np.float32), np.asarray(processor.image_std, np.float32)
            pixels = (pixels - mean) / std
        return pixels.transpose(0, 3, 1, 2)

    def _read_frames(self, video: VideoInput, read_audio: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Sampled, resized, cropped uint8 frames `[n, H, W, 3]` and the mono sound track (or `None`)."""
        shortest_edge, crop_size, interpolation = self._frame_geometry()
        if isinstance(video, (str, os.PathLike)):
            decoded = read_video(
                video, self.num_frames, shortest_edge, crop_size, interpolation, sample_fps=self.sample_fps,
                read_audio=read_audio, sampling_rate=self.feature_extractor.sampling_rate,
                audio_channel=self.audio_channel, num_threads=self.decode_threads, max_pixels=self.max_pixels,
                long_audio_windows=self.feature_extractor.long_audio_windows(),
            )
            return decoded.frames, decoded.audio
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
                raise ValueError(
                    f"`videos` arrays must be uint8 RGB [frames, height, width, 3], got {video.dtype} {video.shape}."
                )
            frames = list(video)
        elif isinstance(video, Sequence) and len(video) > 0 and all(isinstance(f, Image.Image) for f in video):
            frames = [np.asarray(frame.convert("RGB")) for frame in video]
        else:
            raise ValueError(
                "Each item of `videos` must be a file path, a uint8 array [frames, height, width, 3] or a non-empty"
                f" list of PIL images, got {type(video).__name__}."
            )
        # Arrays carry no timestamps, so `sample_fps` cannot apply: sample uniformly over the given frames.
        indices = sample_frame_indices(np.arange(len(frames), dtype=np.float64), self.num_frames)
        resizer = FrameResizer(shortest_edge, crop_size, interpolation)
        rgb_frames = (av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24") for i in indices)
        return np.stack([resizer(frame) for frame in rgb_frames]), None

    def process_video(
        self,
        video: VideoInput,
        audio: np.ndarray | None = None,
        sampling_rate: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Model inputs of one video as unbatched numpy arrays (what a DataLoader worker computes per item).

        Args:
            video: a file path, a uint8 array `[frames, height, width, 3]`, or a list of PIL images.
            audio: a waveform to use instead of the file's sound track, `[samples]`, `[channels, samples]` or
                soundfile's `[samples, channels]` (the shorter axis is taken as channels); multichannel sound is
                mixed or reduced to its first channel following `audio_channel`.
            sampling_rate: rate of `audio` in Hz (required with `audio`).

        Returns:
            `pixel_values` float32 `[num_frames, 3, H, W]`, `video_mask` int64 `[num_frames]`, `input_values` float32
            `[1024, num_mel_bins]` (zeros without sound) and `has_audio` bool scalar.
        """
        if audio is not None:
            _check_sampling_rate(sampling_rate)
        return self._process_one(video, audio, sampling_rate, read_file_audio=audio is None)

    def _process_one(
        self, video: VideoInput, audio: np.ndarray | None, sampling_rate: int | None, read_file_audio: bool
    ) -> dict[str, np.ndarray]:
        frames, file_audio = self._read_frames(video, read_audio=read_file_audio)
        pixel_values = np.zeros((self.num_frames, 3, *frames.shape[1:3]), dtype=np.float32)
        pixel_values[: len(frames)] = self._normalize_frames(frames)
        video_mask = np.zeros(self.num_frames, dtype=np.int64)
        video_mask[: len(frames)] = 1
        waveform = file_audio if audio is None else self._mono_waveform(audio, sampling_rate)
        return {"pixel_values": pixel_values, "video_mask": video_mask, **self._audio_features(waveform)}

    def _audio_features(self, waveform: np.ndarray | None) -> dict[str, np.ndarray]:
        """`input_values` and `has_audio` of a 16 kHz mono waveform; zeros and `False` for no (or empty) sound."""
        extractor = self.feature_extractor
        if waveform is None or waveform.size == 0:
            features = np.zeros((extractor.max_length, extractor.num_mel_bins), dtype=np.float32)
            return {"input_values": features, "has_audio": np.bool_(False)}
        features = extractor(waveform, sampling_rate=extractor.sampling_rate)["input_values"][0]
        return {"input_values": features, "has_audio": np.bool_(True)}

    def _mono_waveform(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray:
        """A caller's waveform as mono float32 at the feature extractor's rate."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            channels_first = audio if audio.shape[0] <= audio.shape[1] else audio.T
            audio = channels_first.mean(axis=0) if self.audio_channel == "mix" else channels_first[0]
        elif audio.ndim != 1:
            raise ValueError(f"`audio` waveforms must be 1-D or 2-D, got shape {audio.shape}.")
        return resample_audio(audio, sampling_rate, self.feature_extractor.sampling_rate)

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: VideoInput | list[VideoInput] | None = None,
        audio: np.ndarray | list[np.ndarray | None] | None = None,
        **kwargs: Unpack[AvigateProcessorKwargs],
    ) -> BatchFeature:
        """Tokenise captions and/or decode videos into one batch.

        Args:
            text: a caption or a list of captions; padded to and truncated at `max_length` tokens, EOS kept.
            videos: a video or a list of videos, each a file path, a uint8 array `[frames, height, width, 3]` or a
                list of PIL images. The sound track is read from files unless `audio` is given.
            audio: one waveform per video (see [`process_video`]), or `None` items for videos without sound. Given
                without `videos`, only `input_values` and `has_audio` are returned.
            kwargs: `return_tensors` (`"pt"`, `"np"` or `None`); `sampling_rate` of every `audio` waveform in Hz; any
                tokenizer keyword (`padding`, `max_length`, ...); the frame settings of [`AvigateVideosKwargs`]
                (`num_frames`, `fps`, `size`, ...). Each may also be grouped per part as `text_kwargs=`,
                `videos_kwargs=` and `audio_kwargs=`. Unknown keywords are ignored with a warning.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (from `text`), `pixel_values` `[N, T, 3, H, W]`,
            `video_mask` `[N, T]` (from `videos`), `input_values` `[N, 1024, 128]` and `has_audio` `[N]`.

        Raises:
            MediaError: a video file is missing, unreadable, corrupt, truncated, too large or has no video stream
                (the message names it and the reason). ValueError: an argument is malformed (the message names the
                argument).

        Example:

        ```python
        >>> batch = processor(videos=["clip.mp4"], num_frames=32, return_tensors="pt")  # doctest: +SKIP
        >>> batch = processor(text=["a dog"], text_kwargs={"padding": "longest"})  # doctest: +SKIP
        ```
        """
        if text is None and videos is None and audio is None:
            raise ValueError("Pass at least one of `text`, `videos` or `audio`.")
        if kwargs.get("images_kwargs"):
            logger.warning("AvigateProcessor takes no images and ignores `images_kwargs`; pass frame settings in "
                           "`videos_kwargs`.")
        try:
            output_kwargs = self._merge_kwargs(
                AvigateProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
            )
        except StrictDataclassError as error:  # a typed keyword of the wrong type: report it as a bad argument
            raise ValueError(str(error)) from error
        if "images" in kwargs:
            raise TypeError("AvigateProcessor takes `videos` (files, frame arrays or lists of PIL images), not `images`.")
        data: dict[str, Any] = {}
        if text is not None:
            data.update(self._tokenize(text, **output_kwargs["text_kwargs"]))
        if videos is not None or audio is not None:
            processor = self._with_video_settings(output_kwargs["videos_kwargs"])
            data.update(processor._process_media(videos, audio, output_kwargs["audio_kwargs"].get("sampling_rate")))
        return_tensors = next(
            (part["return_tensors"] for part in output_kwargs.values()
             if isinstance(part, dict) and part.get("return_tensors") is not None),
            None,
        )
        return BatchFeature(data, tensor_type=return_tensors)

    def _with_video_settings(self, videos_kwargs: dict[str, Any]) -> "AvigateProcessor":
        """A shallow copy of this processor carrying one call's frame settings (concurrent calls never see them)."""
        num_frames = videos_kwargs.get("num_frames", self.num_frames)
        if isinstance(num_frames, bool) or not isinstance(num_frames, Integral) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int of at least 1, got {num_frames!r}.")
        configured = copy.copy(self)
        configured.num_frames, configured.sample_fps = num_frames, videos_kwargs.get("fps", self.sample_fps)
        image_settings = {key: videos_kwargs[key] for key in IMAGE_PROCESSOR_SETTINGS if key in videos_kwargs}
        if isinstance(image_settings.get("size"), int):
            image_settings["size"] = {"shortest_edge": image_settings["size"]}
        if isinstance(image_settings.get("crop_size"), int):
            image_settings["crop_size"] = {"height": image_settings["crop_size"], "width": image_settings["crop_size"]}
        if image_settings:
            configured.image_processor = copy.copy(self.image_processor)
            for key, value in image_settings.items():
                setattr(configured.image_processor, key, value)
        return configured

    def _tokenize(self, text: str | list[str], **kwargs: Any) -> dict[str, Any]:
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, (list, tuple)) or not all(isinstance(t, str) for t in text):
            raise ValueError("`text` must be a string or a list of strings.")
        kwargs.pop("return_tensors", None)  # the batch is converted once, with every part
        encoding = self.tokenizer(list(text), **kwargs)
        return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}

    def _process_media(self, videos, audio, sampling_rate) -> dict[str, np.ndarray]:
        if videos is not None and _is_single_video(videos):
            videos = [videos]
        if audio is not None:
            if isinstance(audio, np.ndarray) and (audio.ndim == 1 or videos is not None and len(videos) == 1):
                audio = [audio]
            if not isinstance(audio, (list, tuple)):
                raise ValueError(f"`audio` must be a waveform or a list of waveforms, got {type(audio).__name__}.")
            if videos is not None and len(audio) != len(videos):
                raise ValueError(f"`audio` has {len(audio)} items but `videos` has {len(videos)}; pass one per video.")
            _check_sampling_rate(sampling_rate)
        if videos is None:
            items = [
                self._audio_features(None if waveform is None else self._mono_waveform(waveform, sampling_rate))
                for waveform in audio
            ]
        else:
            # With `audio`, files' own sound tracks are not read; a `None` item means the video has no sound.
            waveforms = audio if audio is not None else [None] * len(videos)
            items = [
                self._process_one(video, waveform, sampling_rate, read_file_audio=audio is None)
                for video, waveform in zip(videos, waveforms)
            ]
        return {key: np.stack([item[key] for item in items]) for key in items[0]}


def _check_sampling_rate(sampling_rate: Any) -> None:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, Integral) or sampling_rate <= 0:
        raise ValueError(f"`sampling_rate` must be a positive int (Hz) when `audio` is given, got {sampling_rate!r}.")


def _is_single_video(videos: Any) -> bool:
    if isinstance(videos, (str, os.PathLike)):
        return True
    if isinstance(videos, np.ndarray):
        return videos.ndim == 4
    return isinstance(videos, Sequence) and len(videos) > 0 and isinstance(videos[0], Image.Image)


__all__ = ["AvigateProcessor"]
