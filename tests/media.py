"""Small synthetic media files for tests, written with PyAV (no downloads, no ffmpeg binary).

Tests import it as `media` (pytest puts `tests/` on `sys.path`):

```python
>>> import os, tempfile
>>> from media import tone, write_test_video
>>> path = write_test_video(os.path.join(tempfile.mkdtemp(), "clip.mp4"), num_frames=8, fps=8, size=(64, 48),
...                         audio=tone(440.0, 1.0, 16000), sample_rate=16000)
```
"""

from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame `[height, width, 3]` uint8: smooth gradients (so resizing is meaningful) plus a square that moves
    with `index` (so different frames differ)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 100 * np.sin((x + y + 7 * index) / 9)],
        axis=-1,
    )
    side = max(min(width, height) // 4, 2)
    left = (5 * index) % max(width - side, 1)
    frame[height // 3 : height // 3 + side, left : left + side] = (255, 255, 0)
    return np.clip(frame, 0, 255).astype(np.uint8)


def tone(frequency: float, seconds: float, sample_rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave, `[samples]` for mono or `[channels, samples]` (every channel the same tone)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return wave if channels == 1 else np.tile(wave, (channels, 1))


def write_test_video(
    path: str,
    *,
    num_frames: int = 24,
    fps: int = 24,
    size: tuple[int, int] = (64, 48),
    codec: str = "h264",
    frame_times: Sequence[float] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    audio_codec: str = "aac",
) -> str:
    """Write a clip of `num_frames` frames `pattern_frame(i, *size)` and return `path`.

    Args:
        path: output file; the container follows the extension (`.mp4`, `.webm`, `.mkv`).
        num_frames, fps: frame count and nominal frame rate.
        size: `(width, height)`; odd sizes work (h264 then stores yuv444p, since libx264 refuses odd yuv420p).
        codec: video encoder (`"h264"`, `"mpeg4"`, `"libvpx-vp9"`, ...).
        frame_times: presentation time of each frame in seconds (variable frame rate, late start); defaults to
            `i / fps`.
        audio: optional float waveform in [-1, 1], `[samples]` (mono) or `[channels, samples]`; channels 1, 2 and
            6 map to mono, stereo and 5.1.
        sample_rate: sampling rate of `audio`.
        audio_codec: audio encoder (`"aac"`, `"libopus"`, `"flac"`, ...).
    """
    width, height = size
    times = [i / fps for i in range(num_frames)] if frame_times is None else list(frame_times)
    # A fine time base keeps arbitrary `frame_times` exact enough for tests of timestamp-based sampling.
    time_base = Fraction(1, 1000 * fps)
    with av.open(path, mode="w") as container:
        video = container.add_stream(codec, rate=fps)
        odd = width % 2 or height % 2
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if odd and codec in ("h264", "libx264") else "yuv420p"
        video.time_base = time_base
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            layout = {1: "mono", 2: "stereo", 6: "5.1"}[audio.shape[0]]
            sound = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
        for index, seconds in enumerate(times):
            frame = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="rgb24")
            frame.pts, frame.time_base = int(round(seconds / time_base)), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            _encode_audio(container, sound, audio, sample_rate)
    return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    # Feed the encoder through a resampler so it gets the sample format and frame size it wants.
    resampler = av.AudioResampler(
        format=stream.codec_context.format, layout=stream.layout, rate=sample_rate,
        frame_size=stream.codec_context.frame_size or None,
    )
    chunk = 1024
    for start in range(0, audio.shape[1], chunk):
        piece = np.ascontiguousarray(audio[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=stream.layout)
        frame.sample_rate, frame.pts = sample_rate, start
        for resampled in resampler.resample(frame):
            container.mux(stream.encode(resampled))
    for resampled in resampler.resample(None):
        container.mux(stream.encode(resampled))
    container.mux(stream.encode(None))
