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

This module opens, demuxes and drives the passes; the pieces it composes have their own modules: `decoding_types`
(settings, segments, errors), `frame_selection` (which frames and packets), `frame_geometry` (resize, crop, poster)
and `audio_decoding` (downmix, resampling, per-segment sound).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import av
import numpy as np

from .audio_decoding import MonoDownmixer, SpanSound, WindowGatherer
from .decoding_types import DEFAULT_MAX_AUDIO_SAMPLES, DEFAULT_MAX_PIXELS, DecodeSettings, MediaError, VideoSegment
from .frame_geometry import FrameResizer, PosterScaler
from .frame_selection import FrameSelector, Span, Timeline, plan_spans


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


def _demux_timeline(path: str, container: av.container.InputContainer, video, audio_streams) -> Timeline:
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
    return Timeline(np.asarray(pts, dtype=np.int64), np.asarray(keyframe, dtype=bool), time_bases[video_index], end,
                     last_audio_packet, first_packet)


def _rewind(path: str, container: av.container.InputContainer, timeline: Timeline) -> None:
    """Seek back to the file's first packet (exactly: `seek(0)` would skip sound packets stamped before 0, such as
    AAC priming). The second pass checks that it sees that packet first."""
    stream_index, dts, _, _ = timeline.first_packet
    try:
        container.seek(dts or 0, stream=container.streams[stream_index], backward=True, any_frame=True)
    except av.FFmpegError as error:
        reason = f"the file cannot be read a second time from its start (seek failed: {error})"
        raise MediaError(path, reason) from error


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
        plan = plan_spans(timeline, settings)
        spans = plan if segments is None else plan[segments]
        if not spans:
            return
        _rewind(path, container, timeline)
        yield from _decode_spans(path, container, video, audio, timeline, spans, settings,
                                 duration=plan[-1].end - plan[0].start, reads_to_end=spans[-1] is plan[-1])


class _SpanFrames:
    """The converted frames (and posters) of the spans not yet yielded, from the frames the selector settles. The
    rotation and displayed size are those of the first converted frame."""

    def __init__(self, path: str, spans: list[Span], settings: DecodeSettings):
        self.path, self.spans, self.max_pixels = path, spans, settings.max_pixels
        self.resizer = FrameResizer(settings.shortest_edge, settings.crop_size, settings.interpolation)
        self.poster_scaler = PosterScaler(settings.poster_size) if settings.poster_size else None
        self.poster_positions = {self.middle(span) for span in spans}
        self.geometry: dict[str, int] = {}
        self._frames: dict[int, np.ndarray] = {}
        self._posters: dict[int, np.ndarray] = {}

    @staticmethod
    def middle(span: Span) -> int:
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
    selector = FrameSelector(timeline, np.concatenate([span.positions for span in spans]))
    frames = _SpanFrames(path, spans, settings)
    sound = SpanSound(spans, settings) if audio is not None else None
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


def _gather_windows(container, timeline: Timeline, audio, settings: DecodeSettings, num_samples: int) -> np.ndarray:
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
