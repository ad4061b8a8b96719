# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Sound of the decoder: decoded audio frames streamed to mono float32 at the model's rate through one FFmpeg filter
graph, then kept whole up to a bound, cut into per-segment sample ranges, or gathered as the few fbank windows of a
long track; and FFmpeg resampling of a waveform given in memory."""

from fractions import Fraction

import av
import numpy as np

from .decoding_types import DecodeSettings
from .frame_selection import Span


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


class SpanSound:
    """The sound of each span, from the decoded frames of the sound track: the whole (bounded) track for a whole-file
    span, otherwise each span's samples, counted from the first decoded frame's time (so AAC priming that the
    decoder drops does not shift the spans)."""

    def __init__(self, spans: list[Span], settings: DecodeSettings):
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
