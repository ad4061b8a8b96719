# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""What the decoder takes and gives: [`DecodeSettings`] in, [`VideoSegment`] out, [`MediaError`] for a file it
cannot use."""

import os
from dataclasses import dataclass

import numpy as np


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
