# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Which frames the decoder keeps, from timestamps alone: the frames sampled from a run of presentation times, the
file's cut into segments, and which video packets must be decoded to get the sampled frames."""

from dataclasses import dataclass

import av
import numpy as np

from .decoding_types import DecodeSettings


# Half a microsecond: sampling instants are compared with frame times computed in floating point.
TIME_TOLERANCE = 5e-7


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


@dataclass
class Timeline:
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


@dataclass
class Span:
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


def plan_spans(timeline: Timeline, settings: DecodeSettings) -> list[Span]:
    """Segments of `settings.segment_seconds` every `stride_seconds` from the first frame; the last one ends with the
    file. A file not longer than a segment is one whole-file span; spans holding no frame (a gap in a variable frame
    rate stream) are left out."""
    times = timeline.times
    first, end = float(times[0]), max(timeline.end, float(times[-1]))
    count = segment_count(end - first, settings.segment_seconds, settings.stride_seconds)
    if count == 1:
        return [Span(first, end, sample_frame_indices(times, settings.num_frames, settings.sample_fps), None)]
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
        spans.append(Span(start, stop, positions, (start, None if last else stop), len(spans)))
    return spans


class FrameSelector:
    """Which video packets to decode, and which decoded frame each wanted position gets.

    A wanted frame needs its packet and every packet from the keyframe before it (in decoding order, with a
    presentation time not after it: open-GOP leading frames need the previous GOP) up to it. These ranges are merged
    where they overlap; the decoder is drained and reset at the end of each range, and packets outside every range
    are never decoded. Inside a range, frames no other frame references (most B-frames) are skipped unless wanted.
    Each wanted position gets the first frame shown at or after its time (the frame itself, or the
    first decodable one when it cannot be decoded), the rule of decoding the whole stream.
    """

    def __init__(self, timeline: Timeline, positions: np.ndarray):
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
