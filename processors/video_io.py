# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Decode video files with PyAV: sampled frames (resized by FFmpeg's scaler, centre-cropped) and the sound track.

A file is read in two passes. The first demuxes every packet: it collects the presentation timestamps of the video
packets (cheap, nothing is decoded) and decodes and resamples the sound track to 16 kHz. The frames to keep are
chosen from those timestamps, which is right for variable frame rate and for streams that do not start at 0. The
second pass decodes the video and converts only the chosen frames with FFmpeg's scaler (see `FrameResizer`): no
frame goes through PIL, and the frames not chosen are never converted at all.
"""

import os
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image


# PIL resampling filters (what image processors store) → FFmpeg scaler filters.
PIL_TO_SWSCALE = {
    Image.Resampling.NEAREST: "POINT",
    Image.Resampling.BILINEAR: "BILINEAR",
    Image.Resampling.BICUBIC: "BICUBIC",
    Image.Resampling.LANCZOS: "LANCZOS",
    Image.Resampling.BOX: "AREA",
}
# Half a microsecond: sampling instants are compared with frame times computed in floating point.
TIME_TOLERANCE = 5e-7


class MediaError(ValueError):
    """A video file cannot be used: missing, unreadable, not media, no video stream, truncated, undecodable or too
    large. The message names the file and the reason; callers that skip bad files catch this class only."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class DecodedVideo:
    """Frames and sound track of one file.

    Attributes:
        frames: `[n, crop_height, crop_width, 3]` uint8 RGB, `n <= num_frames` (short clips give fewer frames).
        frame_indices: position of each kept frame among all the stream's frames in presentation order.
        frame_times: presentation time of each kept frame in seconds.
        audio: mono float32 waveform at the requested rate, or `None` when the file has no (non-empty) sound track.
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray | None


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """`(height, width)` with the shorter side equal to `shortest_edge`, rounded as CLIP's image processor does."""
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


class FrameResizer:
    """Resize frames so the shorter side is `shortest_edge`, centre-crop `crop_size = (height, width)`, return RGB
    uint8 `[height, width, 3]`; the geometry of CLIP's image processor, computed by FFmpeg's scaler.

    The frame is first converted to packed RGB at full size (the conversion any RGB decode does), then scaled in RGB:
    scaling YUV straight to the target size strays further from a PIL resize of the decoded image. Planar RGB
    (`gbrp`) is avoided: PyAV's conversion to it read uninitialised row padding on small frames (40×32), giving
    different pixels on every call. Both scaler contexts are cached, which is most of the cost on small frames.

    Example:

    ```python
    >>> import av, numpy as np
    >>> resizer = FrameResizer(shortest_edge=32, crop_size=(32, 32))
    >>> resizer(av.VideoFrame.from_ndarray(np.zeros((61, 97, 3), np.uint8), format="rgb24")).shape
    (32, 32, 3)
    ```
    """

    def __init__(self, shortest_edge: int, crop_size: tuple[int, int], interpolation: str = "BICUBIC"):
        self.shortest_edge = shortest_edge
        self.crop_size = crop_size
        self.interpolation = interpolation
        self._to_rgb = VideoReformatter()
        self._scale = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        new_height, new_width = resize_output_size(frame.height, frame.width, self.shortest_edge)
        rgb = self._to_rgb.reformat(frame, format="rgb24")
        image = self._scale.reformat(
            rgb, width=new_width, height=new_height, format="rgb24", interpolation=self.interpolation
        ).to_ndarray()
        return center_crop(image, self.crop_size)


def center_crop(image: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """Centre crop `[H, W, C]` to `crop_size = (height, width)`, zero-padding around a smaller image (the rule of
    transformers' `center_crop`)."""
    crop_height, crop_width = crop_size
    height, width = image.shape[:2]
    if crop_height > height or crop_width > width:
        padded = np.zeros((max(crop_height, height), max(crop_width, width), image.shape[2]), dtype=image.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = image
        image, height, width = padded, padded.shape[0], padded.shape[1]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return image[top : top + crop_height, left : left + crop_width]


def sample_frame_indices(times: np.ndarray, num_frames: int, sample_fps: float | None = None) -> np.ndarray:
    """Choose which frames to keep, given every frame's presentation time in seconds (sorted).

    Uniform mode (`sample_fps=None`): the frames shown at `num_frames` equally spaced instants from the first to the
    last frame time; for a constant frame rate this is `np.linspace(0, n - 1, num_frames).astype(int)`, the
    reference (CLIP4Clip) rule. Clips with at most `num_frames` frames keep every frame.

    `sample_fps` mode (the reference's "1 frame per second, then uniform"): the frames shown every `1 / sample_fps`
    seconds, then, if there are more than `num_frames` of them, a uniform subset as above.

    Example:

    ```python
    >>> import numpy as np
    >>> sample_frame_indices(np.arange(100) / 25, num_frames=4).tolist()
    [0, 33, 66, 99]
    ```
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return np.zeros(0, dtype=np.int64)
    if sample_fps is not None:
        instants = np.arange(times[0], times[-1] + TIME_TOLERANCE, 1.0 / sample_fps)
        candidates = np.unique(_frame_shown_at(times, instants))
        if candidates.size <= num_frames:
            return candidates
        return candidates[np.linspace(0, candidates.size - 1, num_frames).astype(np.int64)]
    if times.size <= num_frames:
        return np.arange(times.size)
    return _frame_shown_at(times, np.linspace(times[0], times[-1], num_frames))


def _frame_shown_at(times: np.ndarray, instants: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each instant: the last frame whose time is not after it."""
    return np.clip(np.searchsorted(times, instants + TIME_TOLERANCE, side="right") - 1, 0, times.size - 1)


def resample_audio(waveform: np.ndarray, sampling_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float waveform with FFmpeg's resampler (the one used for sound tracks in files)."""
    waveform = np.ascontiguousarray(waveform, dtype=np.float32).reshape(1, -1)
    if sampling_rate == target_rate or waveform.size == 0:
        return waveform[0]
    frame = av.AudioFrame.from_ndarray(waveform, format="flt", layout="mono")
    frame.sample_rate = sampling_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    pieces = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame) + resampler.resample(None)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def read_video(
    path: str | os.PathLike,
    num_frames: int,
    shortest_edge: int,
    crop_size: tuple[int, int],
    interpolation: str = "BICUBIC",
    sample_fps: float | None = None,
    read_audio: bool = True,
    sampling_rate: int = 16000,
    audio_channel: str = "mix",
    num_threads: int = 1,
) -> DecodedVideo:
    """Decode `num_frames` uniformly sampled frames and the sound track of a video file.

    Args:
        path: the file (any container and codec FFmpeg reads: mp4, webm, mkv, avi, ...).
        num_frames: frames to sample (fewer when the clip is shorter).
        shortest_edge, crop_size, interpolation: see [`FrameResizer`].
        sample_fps: see [`sample_frame_indices`].
        read_audio: decode the first sound track.
        sampling_rate: rate of the returned waveform.
        audio_channel: `"mix"` (the mean of the channels) or `"first"` (the first channel, which the reference's
            torchaudio Kaldi fbank uses).
        num_threads: decoder threads; 1 suits DataLoader workers (one process per core), 0 lets FFmpeg choose.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a readable media file, or has no video stream.
        RuntimeError: the video stream is truncated or cannot be decoded.

    Example:

    ```python
    >>> clip = read_video("clip.mp4", num_frames=12, shortest_edge=224, crop_size=(224, 224))  # doctest: +SKIP
    >>> clip.frames.shape, clip.audio.dtype  # doctest: +SKIP
    ((12, 224, 224, 3), dtype('float32'))
    ```
    """
    path = os.fspath(path)
    if audio_channel not in ("mix", "first"):
        raise ValueError(f"`audio_channel` must be 'mix' or 'first', got {audio_channel!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path}")
    try:
        times, audio = _scan(path, read_audio, sampling_rate, audio_channel)
        if times.size == 0:
            raise RuntimeError("the video stream holds no frames")
        order = np.argsort(times, kind="stable")
        times = times[order]
        indices = sample_frame_indices(times, num_frames, sample_fps)
        resizer = FrameResizer(shortest_edge, crop_size, interpolation)
        frames = _decode_frames(path, times[indices], resizer, num_threads)
    except av.FFmpegError as error:
        # Name the file and keep FFmpeg's reason.
        raise ValueError(f"Cannot read video file {path} (corrupt, truncated or not a media file): {error}") from error
    except RuntimeError as error:
        raise RuntimeError(f"Cannot read video file {path}: {error}") from error
    except ValueError as error:
        raise ValueError(f"Cannot read video file {path}: {error}") from error
    return DecodedVideo(frames=frames, frame_indices=indices, frame_times=times[indices], audio=audio)


def _scan(path: str, read_audio: bool, sampling_rate: int, audio_channel: str) -> tuple[np.ndarray, np.ndarray | None]:
    """First pass: video packet times (seconds) and the decoded, mono, resampled sound track."""
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        video = container.streams.video[0]
        # Stream attributes read after the container closes read freed memory (PyAV #1137): keep a plain copy.
        video_time_base = float(video.time_base)
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [stream for stream in (video, audio) if stream is not None]
        decode_audio = audio is not None and read_audio
        # Decoded sound is reduced to one channel per frame and resampled once at the end: one resampler call per
        # clip instead of one per frame, and the same path as waveforms passed in memory (`resample_audio`).
        to_planar = av.AudioResampler(format="fltp")
        keep_channel = (lambda planes: planes.mean(axis=0)) if audio_channel == "mix" else (lambda planes: planes[0])
        video_pts, pieces, native_rate = [], [], None
        last_end = dict.fromkeys(streams, 0)  # in each stream's time base; Fraction arithmetic per packet is slow
        for packet in container.demux(*streams):
            # Flush packets (size 0) carry no frame; packets without pts fall back to their decoding time.
            stamp = packet.pts if packet.pts is not None else packet.dts
            if not packet.size or stamp is None:
                continue
            last_end[packet.stream] = max(last_end[packet.stream], stamp + (packet.duration or 0))
            if packet.stream is video:
                video_pts.append(stamp)
            elif decode_audio:
                for frame in packet.decode():
                    native_rate = native_rate or frame.sample_rate
                    planar = [frame] if frame.format.name == "fltp" else to_planar.resample(frame)
                    pieces.extend(keep_channel(out.to_ndarray()) for out in planar)
        # Containers without an up-front packet index (Matroska/WebM, streamed MP4) demux a cut file without error;
        # the duration in their header still tells the cut. The margin leaves room for rounded durations.
        end = max(float(pts * stream.time_base) for stream, pts in last_end.items())
        declared = container.duration / av.time_base if container.duration else None
        if declared is not None and end < 0.9 * declared:
            raise RuntimeError(
                f"the file is truncated: its packets end at {end:.3f} s, its header says {declared:.3f} s"
            )
    times = np.asarray(video_pts, dtype=np.float64) * video_time_base
    if not pieces:
        return times, None
    return times, resample_audio(np.concatenate(pieces), native_rate, sampling_rate)


def _decode_frames(
    path: str,
    wanted_times: np.ndarray,
    resizer: FrameResizer,
    num_threads: int,
) -> np.ndarray:
    """Second pass: decode in order and convert, for each wanted time, the first frame shown at or after it (the
    frame itself, or the first decodable one when leading frames reference a missing keyframe)."""
    frames = []
    with av.open(path) as container:
        video = container.streams.video[0]
        video.thread_count = num_threads
        video.thread_type = "AUTO" if num_threads != 1 else "SLICE"
        for frame in container.decode(video):
            if frame.pts is None:
                continue
            time = float(frame.pts * frame.time_base)
            converted = None
            while len(frames) < len(wanted_times) and wanted_times[len(frames)] <= time + TIME_TOLERANCE:
                if converted is None:
                    converted = resizer(frame)
                frames.append(converted)
            if len(frames) == len(wanted_times):
                break
    if len(frames) < len(wanted_times):
        last = f"{time:.3f} s" if frames else "the start"
        raise RuntimeError(
            f"the video stream is truncated or corrupt: decoding stopped at {last} but the container lists frames up"
            f" to {wanted_times[-1]:.3f} s"
        )
    return np.stack(frames)
