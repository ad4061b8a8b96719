# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Video processor of AVIGATE: video files, frame arrays or lists of PIL images to sampled, CLIP-normalised frames and
a frame mask, decoded by PyAV (`video_io.py`).

transformers' `BaseVideoProcessor` is `VideoProcessorMixin` (settings, `video_preprocessor_config.json`,
`from_pretrained`/`save_pretrained`, typed call keywords, `AutoVideoProcessor`) plus `TorchvisionBackend` (decoding
with torchcodec, resizing torch tensors with torchvision). This class keeps the mixin and replaces the backend: FFmpeg
decodes each file and scales only the sampled frames while decoding (see `read_video`), so memory does not grow with
the file's length or resolution, and neither torchvision nor torchcodec is needed.
"""

import os
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import VideoProcessorMixin

from .decoding_types import DEFAULT_MAX_PIXELS
from .frame_geometry import PIL_TO_SWSCALE, FrameResizer
from .frame_selection import sample_frame_indices
from .video_io import read_video


AvigateVideoInput = str | os.PathLike | np.ndarray | Sequence[Image.Image]


class AvigateVideosKwargs(VideosKwargs, total=False):
    """transformers' video keywords plus the decoder's.

    Attributes:
        decode_threads (`int`): FFmpeg decoder threads per file; 1 suits DataLoader workers, 0 lets FFmpeg choose.
        max_pixels (`int`): files whose frames have more pixels are refused with a [`MediaError`] before decoding.
    """

    decode_threads: int
    max_pixels: int


class AvigateVideoProcessor(VideoProcessorMixin):
    r"""
    Samples `num_frames` frames per video, resizes the shorter side to `size["shortest_edge"]` with `resample`,
    centre-crops `crop_size`, rescales and normalises with `image_mean`/`image_std` (CLIP's geometry, computed by
    FFmpeg's scaler), and pads short clips to `num_frames` frames whose `video_mask` is 0.

    Frames are sampled uniformly over the clip; with `fps`, first at that rate, then `num_frames` uniformly among
    them (the reference's "1 frame per second" loader; files only, since arrays have no timestamps).
    `do_sample_frames=False` keeps every frame of an array or image list (at most `num_frames`). Every setting can be
    overridden for one call. `do_resize` and `do_center_crop` cannot be switched off (frames are resized and cropped
    while they are decoded), and `return_metadata` is not offered.

    Example:

    ```python
    >>> from modeling_avigate.processors import AvigateVideoProcessor
    >>> import numpy as np
    >>> video_processor = AvigateVideoProcessor(size=32, crop_size=32, num_frames=4)
    >>> batch = video_processor(np.zeros((9, 48, 64, 3), np.uint8), return_tensors="np")
    >>> batch["pixel_values"].shape, batch["video_mask"].tolist()
    ((1, 4, 3, 32, 32), [[1, 1, 1, 1]])
    ```
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 12
    decode_threads = 1
    max_pixels = DEFAULT_MAX_PIXELS
    valid_kwargs = AvigateVideosKwargs
    model_input_names = ["pixel_values", "video_mask"]

    def __init__(self, **kwargs: Unpack[AvigateVideosKwargs]):
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)

    def preprocess(
        self,
        videos: AvigateVideoInput | list[AvigateVideoInput],
        sound_track: dict[str, Any] | None = None,
        **kwargs: Unpack[AvigateVideosKwargs],
    ) -> BatchFeature:
        """Frames of a video or a list of videos.

        Args:
            videos: each a file path, a uint8 RGB array `[frames, height, width, 3]` (or `[frames, 3, height,
                width]`) or a non-empty list of PIL images.
            sound_track: [`read_video`]'s sound keywords (`sampling_rate`, `audio_channel`, `long_audio_windows`, as
                [`AvigateFeatureExtractor.sound_track_kwargs`] gives them). When given, each file's sound track is
                decoded in the same pass and returned as `audio`: a mono waveform, or `None` without sound or for
                arrays and image lists.
            kwargs: settings for this call only (see [`AvigateVideosKwargs`]) and `return_tensors`.

        Returns:
            [`BatchFeature`] with `pixel_values` float32 `[N, num_frames, 3, crop_height, crop_width]` and
            `video_mask` int64 `[N, num_frames]`.

        Raises:
            MediaError: a file is missing, unreadable, corrupt, truncated, too large or has no video stream.
            ValueError: a video or a setting is malformed (the message names it).
        """
        validate_typed_dict(self.valid_kwargs, kwargs)
        settings = self._merge_and_standardize_kwargs(**kwargs)
        self._validate_preprocess_kwargs(**settings)
        decoder = _decoder_kwargs(settings)
        videos = [videos] if _is_single_video(videos) else list(videos)
        decoded = [self._decode(video, decoder, settings["do_sample_frames"], sound_track) for video in videos]
        clips = [self._pad_and_normalize(frames, settings) for frames, _ in decoded]
        data = {key: np.stack([clip[key] for clip in clips]) for key in self.model_input_names}
        if sound_track is not None:
            data["audio"] = [audio for _, audio in decoded]
        return BatchFeature(data, tensor_type=settings["return_tensors"], skip_tensor_conversion=["audio"])

    def decoder_kwargs(self, **kwargs: Unpack[AvigateVideosKwargs]) -> dict[str, Any]:
        """The frame keywords of [`read_video`] and [`DecodeSettings`] (`num_frames`, `shortest_edge`, `crop_size`,
        `interpolation`, `sample_fps`, `num_threads`, `max_pixels`) for the saved settings, or for these overrides."""
        return _decoder_kwargs(self._merge_and_standardize_kwargs(**kwargs))

    def _validate_preprocess_kwargs(
        self, num_frames: int, do_resize: bool, do_center_crop: bool, return_metadata: bool, **kwargs
    ) -> None:
        super()._validate_preprocess_kwargs(do_resize=do_resize, do_center_crop=do_center_crop, **kwargs)
        if not (do_resize and do_center_crop):
            raise ValueError("AvigateVideoProcessor always resizes and crops: `do_resize` and `do_center_crop` "
                             "cannot be False.")
        if return_metadata:
            raise ValueError("AvigateVideoProcessor returns no `video_metadata`; `read_video` reports frame times, "
                             "size and rotation.")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int of at least 1, got {num_frames!r}.")

    def _decode(
        self, video: AvigateVideoInput, decoder: dict[str, Any], do_sample_frames: bool, sound_track: dict | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Sampled, resized, cropped uint8 frames `[n, H, W, 3]` of one video and its sound track (or `None`)."""
        if isinstance(video, (str, os.PathLike)):
            if not do_sample_frames:
                raise ValueError(f"{os.fspath(video)}: files are always sampled; `do_sample_frames=False` applies "
                                 "to frame arrays and image lists only.")
            decoded = read_video(video, read_audio=sound_track is not None, **decoder, **(sound_track or {}))
            return decoded.frames, decoded.audio
        frames = _rgb_frames(video)
        if do_sample_frames:
            # Arrays carry no timestamps, so `fps` cannot apply: sample uniformly over the given frames.
            frames = [frames[i] for i in sample_frame_indices(np.arange(len(frames), dtype=np.float64),
                                                              decoder["num_frames"])]
        elif len(frames) > decoder["num_frames"]:
            raise ValueError(f"`do_sample_frames=False` keeps every frame, but a video has {len(frames)} frames and "
                             f"`num_frames` is {decoder['num_frames']}.")
        resizer = FrameResizer(decoder["shortest_edge"], decoder["crop_size"], decoder["interpolation"])
        rgb_frames = (av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24") for frame in frames)
        return np.stack([resizer(frame) for frame in rgb_frames]), None

    def _pad_and_normalize(self, frames: np.ndarray, settings: dict[str, Any]) -> dict[str, np.ndarray]:
        """uint8 `[n, H, W, 3]` → float32 `pixel_values` `[num_frames, 3, H, W]` (rescaled, normalised, zero padding)
        and its int64 `video_mask`."""
        pixels = frames.astype(np.float32)
        if settings["do_rescale"]:
            pixels *= np.float32(settings["rescale_factor"])
        if settings["do_normalize"]:
            mean = np.asarray(settings["image_mean"], np.float32)
            pixels = (pixels - mean) / np.asarray(settings["image_std"], np.float32)
        pixel_values = np.zeros((settings["num_frames"], 3, *frames.shape[1:3]), dtype=np.float32)
        pixel_values[: len(frames)] = pixels.transpose(0, 3, 1, 2)
        video_mask = np.zeros(settings["num_frames"], dtype=np.int64)
        video_mask[: len(frames)] = 1
        return {"pixel_values": pixel_values, "video_mask": video_mask}


def _decoder_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """The decoder's frame keywords for merged, standardised settings: FFmpeg's counterpart of the `resample` filter,
    the shorter side of `size`, the `crop_size` as `(height, width)`."""
    size: SizeDict = settings["size"]
    crop: SizeDict = settings["crop_size"]
    resample = Image.Resampling(int(settings["resample"]))
    if resample not in PIL_TO_SWSCALE:
        raise ValueError(f"The resample filter {resample.name} has no FFmpeg counterpart.")
    return {
        "num_frames": settings["num_frames"],
        "shortest_edge": size.shortest_edge if size.shortest_edge is not None else min(size.height, size.width),
        "crop_size": (crop.height, crop.width),
        "interpolation": PIL_TO_SWSCALE[resample],
        "sample_fps": settings["fps"],
        "num_threads": settings["decode_threads"],
        "max_pixels": settings["max_pixels"],
    }


def _rgb_frames(video: Any) -> list[np.ndarray]:
    """The uint8 `[H, W, 3]` frames of an array `[T, H, W, 3]` / `[T, 3, H, W]` or a non-empty list of PIL images."""
    if isinstance(video, np.ndarray):
        if video.ndim == 4 and video.shape[-1] != 3 and video.shape[1] == 3:
            video = video.transpose(0, 2, 3, 1)
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise ValueError(
                f"`videos` arrays must be uint8 RGB [frames, height, width, 3], got {video.dtype} {video.shape}."
            )
        return list(video)
    if isinstance(video, Sequence) and len(video) > 0 and all(isinstance(frame, Image.Image) for frame in video):
        return [np.asarray(frame.convert("RGB")) for frame in video]
    raise ValueError(
        "Each item of `videos` must be a file path, a uint8 array [frames, height, width, 3] or a non-empty list of "
        f"PIL images, got {type(video).__name__}."
    )


def _is_single_video(videos: Any) -> bool:
    if isinstance(videos, (str, os.PathLike)):
        return True
    if isinstance(videos, np.ndarray):
        return videos.ndim == 4
    return isinstance(videos, Sequence) and len(videos) > 0 and isinstance(videos[0], Image.Image)


__all__ = ["AvigateVideoProcessor"]
