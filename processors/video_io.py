# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Decode video files with PyAV: per segment (or for the whole file), sampled frames (resized by FFmpeg's scaler,
centre-cropped, turned upright), a poster frame and the mono sound track, in one open of the file.

[`decode_segments`] is the decoder; [`read_video`] is its whole-file case. A file is read in two passes over one
open container. The first demuxes every packet without decoding anything: the video packets' timestamps and keyframe
flags. The frames to keep are chosen from those timestamps (right for variable frame rate and for streams that do
not start at 0). The second pass, after a seek back to the first packet, decodes only the video packets from the
keyframe before each chosen frame up to it, converts only the chosen frames with FFmpeg's scaler (see
`FrameResizer`), and streams the sound track through one FFmpeg filter graph to mono 16 kHz (see `MonoDownmixer`).

Every PyAV object dies with its container (reading one afterwards reads freed memory and fails at random), so each
pass copies what it needs into plain Python numbers and numpy arrays while the container is open.

Memory does not grow with the file: frames larger than `max_pixels` are refused before any is decoded, segments keep
only their own sound, and a whole-file sound track longer than `max_audio_samples` is not kept; only its sample
count is, and a third pass gathers the few analysis windows the AVIGATE fbank reads from it (`long_audio_windows`).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

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


@dataclass(frozen=True)
class DecodeSettings:
    """What [`decode_segments`] reads from a file, and how.

    Attributes:
        num_frames: frames sampled per segment (fewer when a segment holds fewer frames).
        shortest_edge, crop_size, interpolation: frame geometry, see [`FrameResizer`].
        sample_fps: see [`sample_frame_indices`].
        read_audio: decode the first sound track.
        sampling_rate: rate of the returned waveforms.
        audio_channel: `"mix"` (the mean of the channels) or `"first"` (the first channel, which the reference's
            torchaudio Kaldi fbank uses).
        num_threads: decoder threads; 1 suits DataLoader workers (one process per core), 0 lets FFmpeg choose.
        max_pixels: files with larger frames are refused with a [`MediaError`] before any frame is decoded.
        max_audio_samples: longest sound track (at `sampling_rate`) a whole-file segment returns whole.
        long_audio_windows: `(count, length)`: for a longer whole-file track, return the `count` windows of `length`
            samples that start every `track_length // count` samples, concatenated (what the AVIGATE fbank reads).
            `None` returns the first `max_audio_samples` samples (all a 10 ms-shift fbank of 1024 frames reads).
        segment_seconds: cut the file into segments of this length; `None` (or a file not longer than it) gives
            one segment spanning the whole file.
        stride_seconds: time between segment starts (defaults to `segment_seconds`; smaller values overlap).
        poster_size: also return each segment's poster (its middle sampled frame, upright, longer side at most
            this many pixels); `None` returns none.
    """

    num_frames: int = 12
    shortest_edge: int = 224
    crop_size: tuple[int, int] = (224, 224)
    interpolation: str = "BICUBIC"
    sample_fps: float | None = None
    read_audio: bool = True
    sampling_rate: int = 16000
    audio_channel: str = "mix"
    num_threads: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_audio_samples: int = DEFAULT_MAX_AUDIO_SAMPLES
    long_audio_windows: tuple[int, int] | None = None
    segment_seconds: float | None = None
    stride_seconds: float | None = None
    poster_size: int | None = None

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1, got {self.num_frames}.")
        if self.audio_channel not in ("mix", "first"):
            raise ValueError(f"`audio_channel` must be 'mix' or 'first', got {self.audio_channel!r}.")
        windows = self.long_audio_windows
        if windows is not None and self.max_audio_samples < windows[0] * windows[1]:
            raise ValueError("`max_audio_samples` must hold at least the `long_audio_windows`.")
        if self.segment_seconds is not None:
            if self.segment_seconds <= 0 or (self.stride_seconds is not None and self.stride_seconds <= 0):
                raise ValueError("`segment_seconds` and `stride_seconds` must be positive.")
            if self.segment_seconds * self.sampling_rate > self.max_audio_samples:
                raise ValueError("`max_audio_samples` must hold a whole segment (`segment_seconds`).")
        elif self.stride_seconds is not None:
            raise ValueError("`stride_seconds` needs `segment_seconds`.")


@dataclass
class VideoSegment:
    """One segment of a file as [`decode_segments`] yields it (the whole file when it is not cut).

    Attributes:
        index: position of the segment among the file's segments (0, 1, ...).
        num_segments: how many segments this decode yields: the file's, or those of the `segments` slice asked for.
        start, end: the span in seconds on the file's timeline (presentation times; the whole file: from its
            first frame to the end of its last packet).
        duration: the file's length in seconds (`end - start` of its whole span).
        frames: `[n, crop_height, crop_width, 3]` uint8 RGB, `n <= num_frames` (short segments give fewer frames).
        frame_indices: position of each kept frame among all the stream's frames in presentation order.
        frame_times: presentation time of each kept frame in seconds.
        audio: mono float32 waveform of the span at `sampling_rate`, or `None` when the file has no (non-empty) sound
            track. A whole-file segment holds the whole track (for a track longer than `max_audio_samples`, its
            fbank windows, see [`DecodeSettings`]).
        audio_samples: length of the span's sound at `sampling_rate` (of the whole track for a whole-file segment).
        poster: the middle kept frame, upright RGB uint8 `[h, w, 3]` with the longer side at most `poster_size`,
            or `None` when no `poster_size` was asked for.
        width, height: size of the source frames as displayed (after the rotation).
        rotation: counter-clockwise rotation in degrees applied to the stored frames to display them (0, 90, 180,
            270), from the file's display matrix.
    """

    index: int
    num_segments: int
    start: float
    end: float
    duration: float
    frames: np.ndarray
    frame_indices: np.ndarray
    frame_times: np.ndarray
    audio: np.ndarray | None
    audio_samples: int
    poster: np.ndarray | None
    width: int
    height: int
    rotation: int


class MonoDownmixer:
    """Stream decoded audio frames into mono float32 chunks at `target_rate` with one FFmpeg filter graph: the
    channels are reduced by `pan` (`"mix"`: their mean, `"first"`: the first one), then resampled. Python never
    touches the multichannel frames: PyAV 18 misreads 8-channel planar frames (9 planes) and crashes the process.
    """

    def __init__(self, target_rate: int, audio_channel: str):
        self.target_rate = target_rate
        self.audio_channel = audio_channel
        self._graph: av.filter.Graph | None = None

    def _build(self, frame: av.AudioFrame) -> None:
        channels = frame.layout.nb_channels
        gains = "c0" if self.audio_channel == "first" else "+".join(f"{1 / channels!r}*c{i}" for i in range(channels))
        graph = av.filter.Graph()
        chain = [
            graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                      channel_layout=frame.layout.name,
                      time_base=str(frame.time_base or Fraction(1, frame.sample_rate))),
            # Mix in float: `pan` works in its input's sample format, and integer input would round the mean.
            graph.add("aformat", sample_fmts="flt"),
            graph.add("pan", f"mono|c0={gains}"),
            graph.add("aformat", sample_fmts="flt", channel_layouts="mono", sample_rates=str(self.target_rate)),
            graph.add("abuffersink"),
        ]
        for source, sink in zip(chain, chain[1:]):
            source.link_to(sink)
        graph.configure()
        self._graph = graph

    def push(self, frame: av.AudioFrame | None) -> list[np.ndarray]:
        """Add one decoded frame (`None`: the end of the track); returns the mono chunks that became ready."""
        if self._graph is None:
            if frame is None:
                return []
            self._build(frame)
        self._graph.push(frame)
        chunks = []
        while True:
            try:
                chunks.append(self._graph.pull().to_ndarray().reshape(-1))
            except (av.error.BlockingIOError, av.error.EOFError):
                return chunks


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


class SpanAudio:
    """Cut the sample ranges `[start, end)` of a stream of mono chunks, in order, keeping only the samples a pending
    range still needs (a rolling buffer, so memory follows the segment length, not the file length). An `end` of
    `None` runs to the end of the track.

    Example:

    ```python
    >>> import numpy as np
    >>> spans = SpanAudio([(0, 4), (2, 6), (6, None)])
    >>> spans.add(np.arange(5, dtype=np.float32)); [s.tolist() for s in spans.ready()]
    [[0.0, 1.0, 2.0, 3.0]]
    >>> spans.add(np.arange(5, 8, dtype=np.float32)); spans.finish(); [s.tolist() for s in spans.ready()]
    [[2.0, 3.0, 4.0, 5.0], [6.0, 7.0]]
    ```
    """

    def __init__(self, ranges: list[tuple[int, int | None]]):
        self._ranges = ranges
        self._next = 0
        self._chunks: list[np.ndarray] = []  # joined only when a range completes: chunks are a few hundred samples
        self._buffer_start = 0  # sample number of the first buffered sample
        self.num_samples = 0
        self._finished = False

    def add(self, chunk: np.ndarray) -> None:
        start, self.num_samples = self.num_samples, self.num_samples + chunk.size
        if self._next == len(self._ranges):
            return  # every range is out
        if start == self._buffer_start:
            # Nothing buffered: samples before the next range are never needed (ranges that start late in the track).
            skip = min(max(self._ranges[self._next][0] - start, 0), chunk.size)
            chunk, self._buffer_start = chunk[skip:], start + skip
        self._chunks.append(chunk)

    def finish(self) -> None:
        self._finished = True

    def ready(self) -> list[np.ndarray]:
        """The waveforms of the next ranges that are complete (in order), each returned once."""
        waveforms = []
        while self._next < len(self._ranges):
            start, end = self._ranges[self._next]
            if not self._finished and (end is None or self.num_samples < end):
                break
            buffer = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
            low, high = start - self._buffer_start, (self.num_samples if end is None else end) - self._buffer_start
            waveforms.append(buffer[max(low, 0) : max(high, 0)].copy())
            self._next += 1
            keep_from = self._ranges[self._next][0] if self._next < len(self._ranges) else self.num_samples
            drop = min(max(keep_from - self._buffer_start, 0), buffer.size)
            self._chunks, self._buffer_start = [buffer[drop:]], self._buffer_start + drop
        return waveforms


@dataclass
class _Timeline:
    """What demuxing the whole file tells before anything is decoded, as plain values (no PyAV object outlives its
    container): every video packet in demux order, and where the file ends."""

    pts: np.ndarray  # int64 presentation stamp of each video packet, in the stream's time base, demux order
    keyframe: np.ndarray  # bool, demux order
    time_base: float
    end: float  # seconds: end of the last packet of any stream
    last_audio_packet: int | None  # position of the last sound packet among all packets with data (None: no sound)
    first_packet: tuple[int, int | None, int, int]  # (stream, dts, stamp, size) of the first packet with data

    @property
    def order(self) -> np.ndarray:
        """Demux indices in presentation order (stable for equal stamps)."""
        return np.argsort(self.pts, kind="stable")

    @property
    def times(self) -> np.ndarray:
        """Presentation times in seconds, sorted."""
        return np.sort(self.pts, kind="stable") * self.time_base


def _open(path: str, max_pixels: int) -> av.container.InputContainer:
    """Open `path`; FFmpeg's own `max_pixels` stops probing from decoding an oversized first frame (an image codec
    such as PNG is sized only by decoding it, and a 16000×16000 16-bit frame takes 1.5 GB)."""
    return av.open(path, options={"max_pixels": str(max_pixels)})


def _streams(path: str, container: av.container.InputContainer, settings: DecodeSettings):
    """The video stream (size checked against `max_pixels`) and the sound stream to decode (or `None`)."""
    if not container.streams.video:
        raise MediaError(path, "the file has no video stream")
    video = container.streams.video[0]
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        raise MediaError(path, f"the frame size cannot be read without decoding a frame larger than the limit of "
                               f"{settings.max_pixels} pixels (`max_pixels`), or at all")
    _check_pixels(path, width, height, settings.max_pixels)
    audio = container.streams.audio[0] if container.streams.audio and settings.read_audio else None
    return video, audio


def _packet_stamp(packet: av.Packet) -> int | None:
    """Presentation stamp of a packet that carries data (its decoding stamp when it has none); `None` for flush
    packets and packets without any stamp."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    return stamp if packet.size else None


def _demux_timeline(path: str, container: av.container.InputContainer, video, audio_streams) -> _Timeline:
    """First pass: the timestamps and keyframe flags of every video packet; nothing is decoded."""
    streams = [video, *audio_streams]
    time_bases = {stream.index: float(stream.time_base) for stream in streams}
    video_index = video.index
    pts, keyframe, first_packet, last_audio_packet, count = [], [], None, None, 0
    last_end = dict.fromkeys(time_bases, 0)  # in each stream's time base; Fraction arithmetic per packet is slow
    for packet in container.demux(*streams):
        stamp = _packet_stamp(packet)
        if stamp is None:
            continue
        if first_packet is None:
            first_packet = (packet.stream_index, packet.dts, stamp, packet.size)
        stream_index = packet.stream_index
        last_end[stream_index] = max(last_end[stream_index], stamp + (packet.duration or 0))
        if stream_index == video_index:
            pts.append(stamp)
            keyframe.append(packet.is_keyframe)
        else:
            last_audio_packet = count
        count += 1
    # Containers without an up-front packet index (Matroska/WebM, streamed MP4) demux a cut file without error; the
    # duration in their header still tells the cut. The margin leaves room for rounded durations.
    end = max(stamp * time_bases[index] for index, stamp in last_end.items())
    declared = container.duration / av.time_base if container.duration else None
    if declared is not None and end < 0.9 * declared:
        raise MediaError(
            path, f"the file is truncated: its packets end at {end:.3f} s, its header says {declared:.3f} s"
        )
    if not pts:
        raise MediaError(path, "the video stream holds no frames")
    return _Timeline(np.asarray(pts, dtype=np.int64), np.asarray(keyframe, dtype=bool), time_bases[video_index], end,
                     last_audio_packet, first_packet)


def _rewind(path: str, container: av.container.InputContainer, timeline: _Timeline) -> None:
    """Seek back to the file's first packet (exactly: `seek(0)` would skip sound packets stamped before 0, such as
    AAC priming). The second pass checks that it sees that packet first."""
    stream_index, dts, _, _ = timeline.first_packet
    try:
        container.seek(dts or 0, stream=container.streams[stream_index], backward=True, any_frame=True)
    except av.FFmpegError as error:
        reason = f"the file cannot be read a second time from its start (seek failed: {error})"
        raise MediaError(path, reason) from error


@dataclass
class _Span:
    """One planned segment: its time span, the positions (in presentation order) of its sampled frames, the span of
    its sound in seconds (`None`: the whole track; an end of `None`: to the end of the track), and its position among
    the file's segments."""

    start: float
    end: float
    positions: np.ndarray
    audio_span: tuple[float, float | None] | None
    number: int = 0


def segment_count(length: float, segment_seconds: float | None, stride_seconds: float | None = None) -> int:
    """How many segments of `segment_seconds` every `stride_seconds` (default: `segment_seconds`) a file of `length`
    seconds (first frame to end) is cut into; 1: the whole file. Spans holding no frame (a gap in a variable frame
    rate stream) count, though the decoder leaves them out."""
    if segment_seconds is None or length <= segment_seconds + TIME_TOLERANCE:
        return 1
    return 1 + int(np.ceil((length - segment_seconds) / (stride_seconds or segment_seconds) - TIME_TOLERANCE))


def _plan_spans(timeline: _Timeline, settings: DecodeSettings) -> list[_Span]:
    """Segments of `settings.segment_seconds` every `stride_seconds` from the first frame; the last one ends with the
    file. A file not longer than a segment is one whole-file span; spans holding no frame (a gap in a variable frame
    rate stream) are left out."""
    times = timeline.times
    first, end = float(times[0]), max(timeline.end, float(times[-1]))
    count = segment_count(end - first, settings.segment_seconds, settings.stride_seconds)
    if count == 1:
        return [_Span(first, end, sample_frame_indices(times, settings.num_frames, settings.sample_fps), None)]
    stride = settings.stride_seconds or settings.segment_seconds
    spans = []
    for index in range(count):
        start = first + index * stride
        last = index == count - 1
        stop = end if last else start + settings.segment_seconds
        low = int(np.searchsorted(times, start - TIME_TOLERANCE, side="left"))
        high = times.size if last else int(np.searchsorted(times, stop - TIME_TOLERANCE, side="left"))
        if low == high:
            continue
        positions = low + sample_frame_indices(times[low:high], settings.num_frames, settings.sample_fps)
        spans.append(_Span(start, stop, positions, (start, None if last else stop), len(spans)))
    return spans


class _FrameSelector:
    """Which video packets to decode, and which decoded frame each wanted position gets.

    A wanted frame needs its packet and every packet from the keyframe before it (in decoding order, with a
    presentation time not after it: open-GOP leading frames need the previous GOP) up to it. These ranges are merged
    where they overlap; the decoder is drained and reset at the end of each range, and packets outside every range
    are never decoded. Inside a range, frames no other frame references (most B-frames) are skipped unless wanted.
    Each wanted position gets the first frame shown at or after its time (the frame itself, or the
    first decodable one when it cannot be decoded), the rule of decoding the whole stream.
    """

    def __init__(self, timeline: _Timeline, positions: np.ndarray):
        order = timeline.order
        self.time_base = timeline.time_base
        self.positions = np.unique(positions)
        self.times = timeline.times[self.positions]
        packets = order[self.positions]
        keyframes = np.flatnonzero(timeline.keyframe)
        starts = []
        for packet, stamp in zip(packets.tolist(), timeline.pts[packets].tolist()):
            candidate = int(np.searchsorted(keyframes, packet, side="right")) - 1
            while candidate >= 0 and timeline.pts[keyframes[candidate]] > stamp:
                candidate -= 1
            starts.append(int(keyframes[candidate]) if candidate >= 0 else 0)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ranges = self._merge(sorted(zip(starts, packets.tolist())))
        self.wanted_packets = set(packets.tolist())
        self._range = 0
        self._pending = list(range(len(self.positions)))  # indices into positions, in time order

    @staticmethod
    def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        merged: list[list[int]] = []
        for start, stop in ranges:
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        return [(start, stop) for start, stop in merged]

    @property
    def done(self) -> bool:
        return not self._pending

    def decode(self, codec_context, packet: av.Packet, index: int) -> list[tuple[int, av.VideoFrame]]:
        """Feed the video packet at demux `index` if a range needs it; returns `(position, frame)` for the wanted
        positions the decoded frames settle."""
        while self._range < len(self.ranges) and self.ranges[self._range][1] < index:
            self._range += 1
        if self._range == len(self.ranges) or index < self.ranges[self._range][0]:
            return []
        codec_context.skip_frame = "DEFAULT" if index in self.wanted_packets else "NONREF"
        settled = self._settle(codec_context.decode(packet), index)
        if index == self.ranges[self._range][1]:
            settled += self.drain(codec_context, index)
        return settled

    def drain(self, codec_context, index: int) -> list[tuple[int, av.VideoFrame]]:
        """The frames the decoder still holds; the decoder is then reset for the next range."""
        settled = self._settle(codec_context.decode(None), index)
        codec_context.flush_buffers()
        return settled

    def _settle(self, frames, index: int) -> list[tuple[int, av.VideoFrame]]:
        settled = []
        for frame in frames:
            if frame.pts is None:
                continue
            time = frame.pts * self.time_base
            while self._pending:
                wanted = self._pending[0]
                if self.times[wanted] > time + TIME_TOLERANCE or self.starts[wanted] > index:
                    break
                settled.append((int(self.positions[wanted]), frame))
                self._pending.pop(0)
        return settled

    def missing_after(self) -> float:
        """Time of the first wanted frame never decoded (for the error message)."""
        return float(self.times[self._pending[0]])


class _PosterScaler:
    """Upright RGB uint8 frames with the longer side at most `size`, scaled by FFmpeg from the decoded frame."""

    def __init__(self, size: int):
        self.size = size
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, rotation: int = 0) -> np.ndarray:
        scale = min(1.0, self.size / max(frame.width, frame.height))
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        image = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                           interpolation="BICUBIC").to_ndarray()
        return np.ascontiguousarray(np.rot90(image, (rotation // 90) % 4))


def decode_segments(path: str | os.PathLike, settings: DecodeSettings,
                    segments: slice | None = None) -> Iterator[VideoSegment]:
    """Decode a video file segment by segment, opening it once; memory follows the segment length, not the file's.

    The file is read in two passes over one open container. The first demuxes every packet without decoding: the
    video packets' presentation times and keyframe flags (right for variable frame rate and streams that do not
    start at 0) and where the file ends. From them each segment's frames are chosen (`num_frames` uniformly over the
    frames shown in its span, see [`sample_frame_indices`]). The second pass, after a seek back to the first packet,
    demuxes the file again: it decodes only the video packets from the keyframe before each chosen frame up to it,
    converts only the chosen frames (FFmpeg's scaler, see [`FrameResizer`]), and streams the sound track through a
    mono resampler (see [`MonoDownmixer`]) into each segment's window. A segment is yielded as soon as its frames and
    sound are complete.

    With `settings.segment_seconds=None`, or for a file not longer than a segment, the only segment is the whole file:
    frames sampled over all of it and its whole sound track (exactly [`read_video`]).

    `segments` decodes only some of the file's segments (what a process of a sharded build does with its piece of a
    long file), each equal to the same segment of a whole decode: the plan is the whole file's, only the video
    packets those segments sample are decoded, and reading stops once the last of them is out. The sound track is
    still decoded from the start (0.17 CPU-s per minute of 5.1 AAC at 48 kHz, a twentieth of the frames' cost), but
    only the segments' samples are kept: segments' sound is counted in decoded samples from the first, and a decoder
    or resampler started mid-track would count (and phase) them differently wherever timestamps and sample counts
    disagree, as in files joined with `ffmpeg -c copy`.

    Args:
        path: the file (any container and codec FFmpeg reads: mp4, webm, mkv, avi, ...).
        settings: what to read (see [`DecodeSettings`]).
        segments: a contiguous slice of the file's segments (`slice(30, 60)`, `slice(30, None)`); `None`: all.

    Yields:
        [`VideoSegment`] in time order. Stop iterating (or close the generator) to close the file early.

    Raises:
        MediaError: the file is missing, unreadable, not a media file, has no video stream, is truncated, cannot be
            decoded or its frames exceed `max_pixels`. A generator raises it when it gets there, possibly after
            yielding segments: a caller that skips bad files must drop the file's earlier segments.

    Example:

    ```python
    >>> settings = DecodeSettings(num_frames=12, segment_seconds=10.0, poster_size=240)
    >>> for segment in decode_segments("film.mp4", settings):  # doctest: +SKIP
    ...     print(segment.index, segment.start, segment.end, segment.frames.shape, segment.audio.shape)
    0 0.0 10.0 (12, 224, 224, 3) (160000,)
    1 10.0 20.0 (12, 224, 224, 3) (160000,)
    ```
    """
    path = os.fspath(path)
    check_media_file(path)
    with _media_errors(path), _open(path, settings.max_pixels) as container:
        video, audio = _streams(path, container, settings)
        timeline = _demux_timeline(path, container, video, [audio] if audio is not None else [])
        plan = _plan_spans(timeline, settings)
        spans = plan if segments is None else plan[segments]
        if not spans:
            return
        _rewind(path, container, timeline)
        yield from _decode_spans(path, container, video, audio, timeline, spans, settings,
                                 duration=plan[-1].end - plan[0].start, reads_to_end=spans[-1] is plan[-1])


class _SpanSound:
    """The sound of each span, from the decoded frames of the sound track: the whole (bounded) track for a whole-file
    span, otherwise each span's samples, counted from the first decoded frame's time (so AAC priming that the
    decoder drops does not shift the spans)."""

    def __init__(self, spans: list[_Span], settings: DecodeSettings):
        self.whole_file = spans[0].audio_span is None
        self.rate = settings.sampling_rate
        self.track = BoundedTrack(settings.max_audio_samples)
        self._waveforms: dict[int, np.ndarray] = {}  # complete spans not yet taken, by span index
        self._completed = 0
        self._spans = [span.audio_span for span in spans]
        self._cutter: SpanAudio | None = None
        self._downmixer = MonoDownmixer(settings.sampling_rate, settings.audio_channel)
        self.finished = False

    def push(self, frame: av.AudioFrame | None) -> None:
        """Add one decoded frame (`None`: the end of the track)."""
        self.finished = frame is None
        if self._cutter is None and not self.whole_file:
            origin = frame.time if frame is not None and frame.time is not None else 0.0
            self._cutter = SpanAudio([self._sample_range(start, end, origin) for start, end in self._spans])
        chunks = self._downmixer.push(frame)
        if self.whole_file:
            self.track.extend(chunks)
            return
        for chunk in chunks:
            self._cutter.add(chunk)
        if frame is None:
            self._cutter.finish()
        for waveform in self._cutter.ready():
            self._waveforms[self._completed] = waveform
            self._completed += 1

    def ready(self, index: int) -> bool:
        return index < self._completed

    def take(self, index: int) -> np.ndarray:
        """The sound of span `index` (once)."""
        return self._waveforms.pop(index)

    def _sample_range(self, start: float, end: float | None, origin: float) -> tuple[int, int | None]:
        first = max(int(round((start - origin) * self.rate)), 0)
        return first, None if end is None else max(int(round((end - origin) * self.rate)), first)


class _SpanFrames:
    """The converted frames (and posters) of the spans not yet yielded, from the frames the selector settles. The
    rotation and displayed size are those of the first converted frame."""

    def __init__(self, path: str, spans: list[_Span], settings: DecodeSettings):
        self.path, self.spans, self.max_pixels = path, spans, settings.max_pixels
        self.resizer = FrameResizer(settings.shortest_edge, settings.crop_size, settings.interpolation)
        self.poster_scaler = _PosterScaler(settings.poster_size) if settings.poster_size else None
        self.poster_positions = {self.middle(span) for span in spans}
        self.geometry: dict[str, int] = {}
        self._frames: dict[int, np.ndarray] = {}
        self._posters: dict[int, np.ndarray] = {}

    @staticmethod
    def middle(span: _Span) -> int:
        return int(span.positions[len(span.positions) // 2])

    def add(self, settled: list[tuple[int, av.VideoFrame]]) -> None:
        for position, frame in settled:
            _check_pixels(self.path, frame.width, frame.height, self.max_pixels)
            if not self.geometry:
                rotation = int(round(frame.rotation)) % 360
                width, height = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
                self.geometry.update(rotation=rotation, width=width, height=height)
            self._frames[position] = self.resizer(frame, self.geometry["rotation"])
            if self.poster_scaler is not None and position in self.poster_positions:
                self._posters[position] = self.poster_scaler(frame, self.geometry["rotation"])

    def ready(self, index: int) -> bool:
        return all(position in self._frames for position in self.spans[index].positions.tolist())

    def take(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames and poster of span `index`; frames no later span samples are then dropped."""
        span = self.spans[index]
        frames = np.stack([self._frames[position] for position in span.positions.tolist()])
        poster = self._posters.get(self.middle(span))
        later = {position for other in self.spans[index + 1 :] for position in other.positions.tolist()}
        for position in set(span.positions.tolist()) - later:
            self._frames.pop(position, None)
            self._posters.pop(position, None)
        return frames, poster


def _decode_spans(path, container, video, audio, timeline, spans, settings, duration: float,
                  reads_to_end: bool) -> Iterator[VideoSegment]:
    """Second pass of [`decode_segments`]: frames and sound of every span, yielded in order when complete. Spans
    that end before the file's last stop the reading once they are out (`reads_to_end=False`)."""
    selector = _FrameSelector(timeline, np.concatenate([span.positions for span in spans]))
    frames = _SpanFrames(path, spans, settings)
    sound = _SpanSound(spans, settings) if audio is not None else None
    video.thread_count = settings.num_threads
    video.thread_type = "AUTO" if settings.num_threads != 1 else "SLICE"
    codec_context = video.codec_context
    whole_file = spans[0].audio_span is None
    next_span, video_index = 0, 0
    streams = [stream for stream in (video, audio) if stream is not None]
    packets = (packet for packet in container.demux(*streams) if _packet_stamp(packet) is not None)
    for count, packet in enumerate(packets):
        signature = (packet.stream_index, packet.dts, _packet_stamp(packet), packet.size)
        if count == 0 and signature != timeline.first_packet:
            raise MediaError(path, "the file cannot be read a second time from its start (the seek back missed)")
        if packet.stream_index == video.index:
            frames.add(selector.decode(codec_context, packet, video_index))
            video_index += 1
        else:
            for frame in packet.decode():
                sound.push(frame)
            if count == timeline.last_audio_packet:  # the track is over: later segments need not wait for sound
                sound.push(None)
        # A whole-file span waits for the end of the sound track; a segment for the end of its own span.
        while (not whole_file and next_span < len(spans) and frames.ready(next_span)
               and (sound is None or sound.ready(next_span))):
            yield _segment(next_span, spans, frames, sound, timeline, settings, container, audio, duration)
            next_span += 1
        if next_span == len(spans) and not reads_to_end:
            return
    frames.add(selector.drain(codec_context, video_index))
    if sound is not None and not sound.finished:
        sound.push(None)
    if not selector.done:
        raise MediaError(path, f"the video stream is truncated or corrupt: decoding stopped before the frame at "
                               f"{selector.missing_after():.3f} s that the container lists")
    for index in range(next_span, len(spans)):
        yield _segment(index, spans, frames, sound, timeline, settings, container, audio, duration)


def _segment(index, spans, frames, sound, timeline, settings, container, audio, duration: float) -> VideoSegment:
    """The `VideoSegment` of span `index` (of those decoded) once its frames and sound are complete."""
    span = spans[index]
    pixels, poster = frames.take(index)
    waveform, num_samples = None, 0
    if sound is not None and sound.whole_file:
        waveform, num_samples = sound.track.waveform(), sound.track.num_samples
        if sound.track.overflowed and settings.long_audio_windows is not None:
            waveform = _gather_windows(container, timeline, audio, settings, num_samples)
    elif sound is not None:
        waveform = sound.take(index)
        num_samples = waveform.size
    return VideoSegment(
        index=span.number, num_segments=len(spans), start=span.start, end=span.end,
        duration=duration, frames=pixels, frame_indices=span.positions.copy(),
        frame_times=timeline.times[span.positions], audio=waveform if num_samples else None,
        audio_samples=num_samples, poster=poster, **frames.geometry,
    )


def _gather_windows(container, timeline: _Timeline, audio, settings: DecodeSettings, num_samples: int) -> np.ndarray:
    """Third pass, for whole-file sound tracks longer than `max_audio_samples` only: the fbank windows of the whole
    track, concatenated (see [`WindowGatherer`])."""
    count, length = settings.long_audio_windows
    gatherer = WindowGatherer(num_samples // count, count, length)
    downmixer = MonoDownmixer(settings.sampling_rate, settings.audio_channel)
    _rewind(container.name, container, timeline)
    for packet in container.demux(audio):
        for frame in packet.decode():
            for chunk in downmixer.push(frame):
                gatherer.add(chunk)
    for chunk in downmixer.push(None):
        gatherer.add(chunk)
    return gatherer.windows


def probe_duration(path: str | os.PathLike) -> float | None:
    """The length in seconds that the container's header declares (no packet is read); `None` when it declares none
    or the file cannot be opened. An estimate for planning work (how many segments to expect), not the decoder's
    timeline: a file it cannot open gets its [`MediaError`] from the decoder."""
    path = os.fspath(path)
    try:
        check_media_file(path)
        # The least probing FFmpeg allows: its default decodes the first frames to fill in stream parameters, 10 ms of
        # a 10 ms open of a 720p mp4 (the header alone: 0.6 ms; the header of a 10-minute mp4: 13 ms).
        options = {"max_pixels": str(DEFAULT_MAX_PIXELS), "probesize": "32", "analyzeduration": "0"}
        with av.open(path, options=options) as container:
            if container.duration:
                return container.duration / av.time_base
            video = container.streams.video[0] if container.streams.video else None
            if video is not None and video.duration and video.time_base:
                return float(video.duration * video.time_base)
    except (MediaError, av.FFmpegError, OSError):
        pass
    return None


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
) -> VideoSegment:
    """Decode `num_frames` uniformly sampled, upright frames and the sound track of a whole video file: the one
    segment [`decode_segments`] gives without `segment_seconds` (the arguments are those of [`DecodeSettings`]).

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
    settings = DecodeSettings(
        num_frames=num_frames, shortest_edge=shortest_edge, crop_size=crop_size, interpolation=interpolation,
        sample_fps=sample_fps, read_audio=read_audio, sampling_rate=sampling_rate, audio_channel=audio_channel,
        num_threads=num_threads, max_pixels=max_pixels, max_audio_samples=max_audio_samples,
        long_audio_windows=long_audio_windows,
    )
    (segment,) = decode_segments(path, settings)
    return segment


@contextmanager
def _media_errors(path: str) -> Iterator[None]:
    """Turn FFmpeg's and the OS's errors while reading `path` into one [`MediaError`] naming the file."""
    try:
        yield
    except (av.FFmpegError, OSError) as error:
        # FFmpeg's own reason (invalid data, end of file, permission denied, ...), with the file named once.
        reason = getattr(error, "strerror", None) or str(error)
        raise MediaError(path, f"cannot be read as media (corrupt, truncated or not a video file): {reason}") from error


def _check_pixels(path: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError(path, f"frames of {width}x{height} exceed the limit of {max_pixels} pixels (`max_pixels`)")
