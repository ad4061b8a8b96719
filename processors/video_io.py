# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Decode video files with PyAV: sampled frames (resized by FFmpeg's scaler, centre-cropped, turned upright) and the
sound track.

A file is read in two passes. The first demuxes every packet: it collects the presentation timestamps of the video
packets (cheap, nothing is decoded) and streams the sound track through a mono 16 kHz resampler into a bounded buffer.
The frames to keep are chosen from those timestamps, which is right for variable frame rate and for streams that do
not start at 0. The second pass decodes the video and converts only the chosen frames with FFmpeg's scaler (see
`FrameResizer`): no frame goes through PIL, and the frames not chosen are never converted at all.

Every PyAV object dies with its container (reading one afterwards reads freed memory and fails at random), so each
pass copies what it needs into plain Python numbers and numpy arrays inside its `with av.open(...)` block.

Memory does not grow with the file: frames larger than `max_pixels` are refused before they are decoded, and a sound
track longer than `max_audio_samples` is not kept; only its sample count is, and a third pass gathers the few
analysis windows the AVIGATE fbank reads from it (`long_audio_windows`).
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
# Frames above this many pixels are refused: 3x 8K UHD (7680x4320), well above any real video, far below the
# 16000x16000 frame that took 1.2 GB to decode.
DEFAULT_MAX_PIXELS = 100_000_000
# Longest sound track kept whole (20 minutes at 16 kHz, 77 MB of float32); longer tracks keep only fbank windows.
DEFAULT_MAX_AUDIO_SAMPLES = 16000 * 60 * 20
# Native-rate mono samples gathered before one resampler call: few PyAV calls per clip, a small buffer.
RESAMPLE_CHUNK = 1 << 16


class MediaError(ValueError):
    """A video file cannot be used: missing, unreadable, not media, no video stream, truncated, undecodable or too
    large. The message names the file and the reason; callers that skip bad files catch this class only."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Exceptions pickle as `cls(*args)`; rebuild from both fields so the error crosses process pools intact.
        return type(self), (self.path, self.reason)


@dataclass
class DecodedVideo:
    """Frames and sound track of one file.

    Attributes:
        frames: `[n, crop_height, crop_width, 3]` uint8 RGB, `n <= num_frames` (short clips give fewer frames).
        frame_indices: position of each kept frame among all the stream's frames in presentation order.
        frame_times: presentation time of each kept frame in seconds.
        audio: mono float32 waveform at the requested rate, or `None` when the file has no (non-empty) sound track.
            For a track longer than `max_audio_samples`, the concatenated fbank windows (see [`read_video`]).
        width, height: size of the source frames as displayed (after the rotation).
        rotation: counter-clockwise rotation in degrees applied to the stored frames to display them (0, 90, 180,
            270), from the file's display matrix.
        audio_samples: length of the whole sound track at the requested rate (0 without sound).
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray | None
    width: int
    height: int
    rotation: int = 0
    audio_samples: int = 0


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """`(height, width)` with the shorter side equal to `shortest_edge`, rounded as CLIP's image processor does."""
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


class FrameResizer:
    """Resize frames so the shorter side is `shortest_edge`, centre-crop `crop_size = (height, width)`, return RGB
    uint8 `[height, width, 3]`; the geometry of CLIP's image processor, computed by FFmpeg's scaler. A rotation
    (from the file's display matrix) is applied before the crop, so the geometry is that of the upright frame.

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

    def __call__(self, frame: av.VideoFrame, rotation: int = 0) -> np.ndarray:
        """The frame resized, turned `rotation` degrees counter-clockwise (a multiple of 90) and cropped."""
        quarter_turns = (rotation // 90) % 4
        # Resize in the stored orientation to the size the displayed frame gets, then turn the small image.
        height, width = (frame.width, frame.height) if quarter_turns % 2 else (frame.height, frame.width)
        new_height, new_width = resize_output_size(height, width, self.shortest_edge)
        if quarter_turns % 2:
            new_height, new_width = new_width, new_height
        rgb = self._to_rgb.reformat(frame, format="rgb24")
        image = self._scale.reformat(
            rgb, width=new_width, height=new_height, format="rgb24", interpolation=self.interpolation
        ).to_ndarray()
        return center_crop(np.rot90(image, quarter_turns), self.crop_size)


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


def check_media_file(path: str) -> None:
    """Raise [`MediaError`] unless `path` is an existing, readable regular file. Checked before FFmpeg opens it: a FIFO
    would block the open forever, and a directory or a dangling link would give a less clear FFmpeg message."""
    if not os.path.lexists(path):
        raise MediaError(path, "file not found")
    if not os.path.exists(path):
        raise MediaError(path, "dangling symbolic link (its target does not exist)")
    if os.path.isdir(path):
        raise MediaError(path, "is a directory, not a video file")
    if not os.path.isfile(path):
        raise MediaError(path, "not a regular file (a FIFO, socket or device)")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "the file is empty (0 bytes)")


class MonoResampler:
    """Stream decoded audio frames into mono float32 chunks at `target_rate`, without keeping the native-rate track.

    Channels are reduced first (`"mix"`: their mean, `"first"`: the first one), native samples are gathered into
    chunks of `RESAMPLE_CHUNK` and each chunk goes through one FFmpeg resampler, which keeps its filter state between
    calls, so the output is the same as resampling the whole track at once.
    """

    def __init__(self, target_rate: int, audio_channel: str):
        self.target_rate = target_rate
        self.audio_channel = audio_channel
        self.native_rate: int | None = None
        self._to_planar = av.AudioResampler(format="fltp")
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """Add one decoded frame; returns the resampled chunks that became ready (often none)."""
        self.native_rate = self.native_rate or frame.sample_rate
        planar = [frame] if frame.format.name == "fltp" else self._to_planar.resample(frame)
        for piece in planar:
            planes = piece.to_ndarray()
            self._pending.append(planes.mean(axis=0) if self.audio_channel == "mix" else planes[0].copy())
            self._pending_size += planes.shape[1]
        return self._resample_pending() if self._pending_size >= RESAMPLE_CHUNK else []

    def flush(self) -> list[np.ndarray]:
        """The last resampled chunks (the resampler's delay line included)."""
        chunks = self._resample_pending() if self._pending_size else []
        if self.native_rate is not None and self.native_rate != self.target_rate:
            chunks += [out.to_ndarray().reshape(-1) for out in self._resampler.resample(None)]
        return chunks

    def _resample_pending(self) -> list[np.ndarray]:
        native = np.concatenate(self._pending).astype(np.float32, copy=False)
        self._pending, self._pending_size = [], 0
        if self.native_rate == self.target_rate:
            return [native]
        frame = av.AudioFrame.from_ndarray(native.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.native_rate
        return [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]


class BoundedTrack:
    """The first `max_samples` samples of the resampled sound track; past that only its length is counted."""

    def __init__(self, max_samples: int):
        self.max_samples = max_samples
        self.num_samples = 0
        self._chunks: list[np.ndarray] = []

    def extend(self, chunks: list[np.ndarray]) -> None:
        for chunk in chunks:
            room = self.max_samples - self.num_samples
            if room > 0:
                self._chunks.append(chunk[:room])
            self.num_samples += chunk.size

    @property
    def overflowed(self) -> bool:
        return self.num_samples > self.max_samples

    def waveform(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)


class WindowGatherer:
    """Copy `count` windows of `length` samples starting every `hop` samples out of a stream of chunks: the only
    samples the AVIGATE fbank (frame shift = track length // 1024) reads from a long sound track.

    Concatenated, the windows form a waveform of `count * length` samples whose fbank with a shift of `length` has
    the same frames as the whole track's fbank (each frame removes its own mean, so the track's mean drops out).

    Example:

    ```python
    >>> import numpy as np
    >>> gatherer = WindowGatherer(hop=10, count=3, length=4)
    >>> for chunk in np.array_split(np.arange(35, dtype=np.float32), 4):
    ...     gatherer.add(chunk)
    >>> gatherer.windows.tolist()
    [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0]
    ```
    """

    def __init__(self, hop: int, count: int, length: int):
        self.hop, self.count, self.length = hop, count, length
        self._windows = np.zeros((count, length), dtype=np.float32)
        self._offset = 0

    def add(self, chunk: np.ndarray) -> None:
        start, end = self._offset, self._offset + chunk.size
        first = max(0, (start - self.length) // self.hop)
        last = min(self.count - 1, (end - 1) // self.hop)
        for window in range(first, last + 1):
            begin = window * self.hop
            low, high = max(begin, start), min(begin + self.length, end)
            if low < high:
                self._windows[window, low - begin : high - begin] = chunk[low - start : high - start]
        self._offset = end

    @property
    def windows(self) -> np.ndarray:
        return self._windows.reshape(-1)


@dataclass
class _Scan:
    """What the first pass learns, as plain values (no PyAV object outlives its container)."""

    times: np.ndarray
    audio: np.ndarray | None
    audio_samples: int
    audio_overflowed: bool


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
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_audio_samples: int = DEFAULT_MAX_AUDIO_SAMPLES,
    long_audio_windows: tuple[int, int] | None = None,
) -> DecodedVideo:
    """Decode `num_frames` uniformly sampled, upright frames and the sound track of a video file.

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
        max_pixels: larger frames are refused with a [`MediaError`] before they are decoded.
        max_audio_samples: longest sound track (at `sampling_rate`) returned whole.
        long_audio_windows: `(count, length)`: for a longer track, return the `count` windows of `length` samples
            that start every `track_length // count` samples, concatenated (what the AVIGATE fbank reads; one more
            pass over the sound track). `None` returns the first `max_audio_samples` samples (all a 10 ms-shift
            fbank of 1024 frames reads).

    Raises:
        MediaError: the file is missing, unreadable, not a media file, has no video stream, is truncated, cannot be
            decoded or its frames exceed `max_pixels`. Nothing else is expected from a file: any other exception is
            a bug.

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
    if long_audio_windows is not None and max_audio_samples < long_audio_windows[0] * long_audio_windows[1]:
        raise ValueError("`max_audio_samples` must hold at least the `long_audio_windows`.")
    check_media_file(path)
    try:
        scan = _scan(path, read_audio, sampling_rate, audio_channel, max_pixels, max_audio_samples)
        order = np.argsort(scan.times, kind="stable")
        times = scan.times[order]
        indices = sample_frame_indices(times, num_frames, sample_fps)
        resizer = FrameResizer(shortest_edge, crop_size, interpolation)
        frames, (width, height), rotation = _decode_frames(path, times[indices], resizer, num_threads, max_pixels)
        audio = scan.audio
        if scan.audio_overflowed and long_audio_windows is not None:
            audio = _gather_windows(path, sampling_rate, audio_channel, scan.audio_samples, *long_audio_windows)
    except (av.FFmpegError, OSError) as error:
        # FFmpeg's own reason (invalid data, end of file, permission denied, ...), with the file named once.
        reason = getattr(error, "strerror", None) or str(error)
        raise MediaError(path, f"cannot be read as media (corrupt, truncated or not a video file): {reason}") from error
    return DecodedVideo(
        frames=frames, frame_indices=indices, frame_times=times[indices], audio=audio, width=width, height=height,
        rotation=rotation, audio_samples=scan.audio_samples,
    )


def _scan(
    path: str, read_audio: bool, sampling_rate: int, audio_channel: str, max_pixels: int, max_audio_samples: int
) -> _Scan:
    """First pass: video packet times (seconds) and the bounded, mono, resampled sound track."""
    with av.open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "the file has no video stream")
        video = container.streams.video[0]
        _check_pixels(path, video.codec_context.width, video.codec_context.height, max_pixels)
        video_time_base = float(video.time_base)
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [stream for stream in (video, audio) if stream is not None]
        time_bases = {stream.index: float(stream.time_base) for stream in streams}
        decode_audio = audio is not None and read_audio
        resampler = MonoResampler(sampling_rate, audio_channel)
        track = BoundedTrack(max_audio_samples)
        video_pts = []
        last_end = dict.fromkeys(time_bases, 0)  # in each stream's time base; Fraction arithmetic per packet is slow
        for packet in container.demux(*streams):
            # Flush packets (size 0) carry no frame; packets without pts fall back to their decoding time.
            stamp = packet.pts if packet.pts is not None else packet.dts
            if not packet.size or stamp is None:
                continue
            stream_index = packet.stream_index
            last_end[stream_index] = max(last_end[stream_index], stamp + (packet.duration or 0))
            if stream_index == video.index:
                video_pts.append(stamp)
            elif decode_audio:
                for frame in packet.decode():
                    track.extend(resampler.push(frame))
        if decode_audio:
            track.extend(resampler.flush())
        # Containers without an up-front packet index (Matroska/WebM, streamed MP4) demux a cut file without error;
        # the duration in their header still tells the cut. The margin leaves room for rounded durations.
        end = max(pts * time_bases[index] for index, pts in last_end.items())
        declared = container.duration / av.time_base if container.duration else None
    if declared is not None and end < 0.9 * declared:
        raise MediaError(
            path, f"the file is truncated: its packets end at {end:.3f} s, its header says {declared:.3f} s"
        )
    if not video_pts:
        raise MediaError(path, "the video stream holds no frames")
    waveform = track.waveform() if track.num_samples else None
    times = np.asarray(video_pts, dtype=np.float64) * video_time_base
    return _Scan(times, waveform, track.num_samples, track.overflowed)


def _check_pixels(path: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError(path, f"frames of {width}x{height} exceed the limit of {max_pixels} pixels (`max_pixels`)")


def _decode_frames(
    path: str,
    wanted_times: np.ndarray,
    resizer: FrameResizer,
    num_threads: int,
    max_pixels: int,
) -> tuple[np.ndarray, tuple[int, int], int]:
    """Second pass: decode in order and convert, for each wanted time, the first frame shown at or after it (the
    frame itself, or the first decodable one when leading frames reference a missing keyframe).

    Returns the frames, the displayed `(width, height)` of the source and its rotation (of the first kept frame).
    """
    frames, size, rotation, time = [], (0, 0), 0, 0.0
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
                    _check_pixels(path, frame.width, frame.height, max_pixels)
                    if not frames:
                        rotation = int(round(frame.rotation)) % 360
                        size = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
                    converted = resizer(frame, rotation)
                frames.append(converted)
            if len(frames) == len(wanted_times):
                break
    if len(frames) < len(wanted_times):
        last = f"{time:.3f} s" if frames else "the start"
        raise MediaError(
            path,
            f"the video stream is truncated or corrupt: decoding stopped at {last} but the container lists frames up"
            f" to {wanted_times[-1]:.3f} s",
        )
    return np.stack(frames), size, rotation


def _gather_windows(
    path: str, sampling_rate: int, audio_channel: str, num_samples: int, count: int, length: int
) -> np.ndarray:
    """Third pass, for long sound tracks only: the `count` fbank windows of the whole track, concatenated."""
    gatherer = WindowGatherer(num_samples // count, count, length)
    resampler = MonoResampler(sampling_rate, audio_channel)
    with av.open(path) as container:
        for frame in container.decode(container.streams.audio[0]):
            for chunk in resampler.push(frame):
                gatherer.add(chunk)
        for chunk in resampler.flush():
            gatherer.add(chunk)
    return gatherer.windows
