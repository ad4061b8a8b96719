"""Small synthetic media files for tests, written with PyAV (no downloads, no ffmpeg binary).

Tests import it as `media` (pytest puts `tests/` on `sys.path`):

```python
>>> import os, tempfile
>>> from media import tone, write_test_video
>>> path = write_test_video(os.path.join(tempfile.mkdtemp(), "clip.mp4"), num_frames=8, fps=8, size=(64, 48),
...                         audio=tone(440.0, 1.0, 16000), sample_rate=16000)
```
"""

import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame `[height, width, 3]` uint8: smooth gradients (so resizing is meaningful) plus a square that moves
    with `index` (so different frames differ)."""
    # Row and column vectors broadcast into the channels: full coordinate grids made an 8K frame take seconds.
    y, x = (axis.astype(np.float32) for axis in np.ogrid[0:height, 0:width])
    frame = np.empty((height, width, 3), np.float32)
    frame[..., 0] = 255 * x / max(width - 1, 1)
    frame[..., 1] = 255 * y / max(height - 1, 1)
    frame[..., 2] = 128 + 100 * np.sin((x + y + 7 * index) / 9)
    side = max(min(width, height) // 4, 2)
    left = (5 * index) % max(width - side, 1)
    frame[height // 3 : height // 3 + side, left : left + side] = (255, 255, 0)
    return np.clip(frame, 0, 255).astype(np.uint8)


def tone(frequency: float, seconds: float, sample_rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave, `[samples]` for mono or `[channels, samples]` (every channel the same tone)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return wave if channels == 1 else np.tile(wave, (channels, 1))


# Channel count -> FFmpeg layout of the sound tracks written here.
AUDIO_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 7: "6.1", 8: "7.1", 16: "hexadecagonal"}


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
    rotation: int = 0,
    container_format: str | None = None,
    gop_size: int | None = None,
) -> str:
    """Write a clip of `num_frames` frames `pattern_frame(i, *size)` and return `path`.

    Args:
        path: output file; the container follows the extension (`.mp4`, `.webm`, `.mkv`).
        num_frames, fps: frame count and nominal frame rate.
        size: `(width, height)`; odd sizes work (h264 then stores yuv444p, since libx264 refuses odd yuv420p).
        codec: video encoder (`"h264"`, `"mpeg4"`, `"libvpx-vp9"`, ...).
        frame_times: presentation time of each frame in seconds (variable frame rate, late start); defaults to
            `i / fps`.
        audio: optional float waveform in [-1, 1], `[samples]` (mono) or `[channels, samples]`; channels 1, 2, 6,
            7, 8 and 16 map to mono, stereo, 5.1, 6.1, 7.1 and hexadecagonal.
        sample_rate: sampling rate of `audio`.
        audio_codec: audio encoder (`"aac"`, `"libopus"`, `"flac"`, ...).
        rotation: display rotation in degrees counter-clockwise (written as the display matrix). The stored frames
            are `pattern_frame` turned the other way, so a player that honours the matrix shows `pattern_frame`.
        container_format: FFmpeg muxer when the extension does not name it (`"mpegts"` for `.ts`).
        gop_size: frames between keyframes (the encoder's default when `None`).
    """
    width, height = size
    times = [i / fps for i in range(num_frames)] if frame_times is None else list(frame_times)
    # A fine time base keeps arbitrary `frame_times` exact enough for tests of timestamp-based sampling.
    time_base = Fraction(1, 1000 * fps)
    quarter_turns = (rotation // 90) % 4
    stored_width, stored_height = (height, width) if quarter_turns % 2 else (width, height)
    with av.open(path, mode="w", format=container_format) as container:
        video = container.add_stream(codec, rate=fps)
        odd = stored_width % 2 or stored_height % 2
        video.width, video.height = stored_width, stored_height
        if rotation:
            video.set_display_rotation(rotation)
        if codec == "libx265":
            video.options = {"x265-params": "log-level=none"}
        default_format = "yuv444p" if odd and codec in ("h264", "libx264") else "yuv420p"
        video.pix_fmt = "yuvj420p" if codec == "mjpeg" else default_format  # FFmpeg's mjpeg encoder wants full range
        video.time_base = time_base
        if gop_size is not None:
            video.codec_context.gop_size = gop_size
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            layout = AUDIO_LAYOUTS[audio.shape[0]]
            sound = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
        for index, seconds in enumerate(times):
            stored = np.ascontiguousarray(np.rot90(pattern_frame(index, width, height), -quarter_turns))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
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
        # Packed samples: PyAV 18 miscounts the planes of 8-channel planar frames.
        piece = np.ascontiguousarray(audio[:, start : start + chunk].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout=stream.layout)
        frame.sample_rate, frame.pts = sample_rate, start
        for resampled in resampler.resample(frame):
            container.mux(stream.encode(resampled))
    for resampled in resampler.resample(None):
        container.mux(stream.encode(resampled))
    container.mux(stream.encode(None))


def write_silent_audio_video(
    path: str, seconds: float, sample_rate: int = 8000, size: tuple[int, int] = (64, 48)
) -> str:
    """A two-frame clip (at 0 s and at `seconds` - 1) with a silent FLAC sound track of `seconds` (FLAC stores
    silence in a few bytes per frame, so a 2-hour track is a small file written in seconds)."""
    width, height = size
    with av.open(path, mode="w") as container:
        video = container.add_stream("mpeg4", rate=1)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("flac", rate=sample_rate, layout="mono")
        sound.codec_context.format = "s16"
        for index, pts in enumerate((0, max(int(seconds) - 1, 1))):
            frame = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="rgb24")
            frame.pts = pts
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        block, total = 1 << 16, int(seconds * sample_rate)
        for start in range(0, total, block):
            silence = np.zeros((1, min(block, total - start)), dtype=np.int16)
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


@dataclass
class CorpusClip:
    """One generated file and what decoding it must give."""

    path: str
    num_frames: int
    has_audio: bool
    size: tuple[int, int]  # displayed (width, height)


# name: (keyword arguments of write_test_video, seconds of sound or None). Codecs h264/hevc/vp9/mpeg4/mjpeg,
# containers mp4/webm/mkv/avi/ts, sound aac/opus/mp3/flac/pcm at 8-96 kHz, mono/stereo/5.1, rotations, variable
# frame rate, one frame, no sound, sound longer and shorter than the video.
CORPUS = {
    "h264_aac_stereo_44k.mp4": (dict(codec="h264", audio_codec="aac", sample_rate=44100), (2, 1.0)),
    "hevc_aac_51_48k.mkv": (dict(codec="libx265", audio_codec="aac", sample_rate=48000), (6, 1.0)),
    "vp9_opus_stereo_48k.webm": (dict(codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000), (2, 1.0)),
    "mpeg4_mp3_mono_22k.avi": (dict(codec="mpeg4", audio_codec="mp3", sample_rate=22050), (1, 1.0)),
    "mjpeg_pcm_mono_8k.avi": (dict(codec="mjpeg", audio_codec="pcm_s16le", sample_rate=8000), (1, 1.0)),
    "h264_aac_ts_32k.ts": (dict(codec="h264", audio_codec="aac", sample_rate=32000, container_format="mpegts"),
                           (2, 1.0)),
    "h264_flac_96k.mkv": (dict(codec="h264", audio_codec="flac", sample_rate=96000), (2, 1.0)),
    "rotate_90.mp4": (dict(codec="h264", rotation=90), None),
    "rotate_270.mp4": (dict(codec="h264", rotation=270, audio_codec="aac", sample_rate=16000), (1, 1.0)),
    "vfr.mkv": (dict(codec="h264", frame_times=[0.0, 0.05, 0.3, 0.32, 0.7, 0.95, 1.4, 1.41]), None),
    "one_frame.mp4": (dict(codec="h264", num_frames=1), (1, 0.5)),
    "no_audio.mp4": (dict(codec="h264"), None),
    "audio_longer.mp4": (dict(codec="h264", audio_codec="aac", sample_rate=16000), (1, 3.0)),
    "audio_shorter.mkv": (dict(codec="h264", audio_codec="libopus", sample_rate=48000), (2, 0.2)),
}


def write_corpus(folder: str, size: tuple[int, int] = (64, 48)) -> dict[str, CorpusClip]:
    """Write every `CORPUS` clip (8 frames at 8 fps unless said otherwise) into `folder`, plus a 3-minute silent
    sound track; returns the clips by name."""
    os.makedirs(folder, exist_ok=True)
    clips = {}
    for name, (options, sound) in CORPUS.items():
        options = {"num_frames": 8, "fps": 8, "size": size, "sample_rate": 16000, **options}
        if options.get("frame_times") is not None:
            options["num_frames"] = len(options["frame_times"])
        audio = None
        if sound is not None:
            channels, seconds = sound
            audio = tone(440.0, seconds, options["sample_rate"], channels=channels)
        path = write_test_video(os.path.join(folder, name), audio=audio, **options)
        clips[name] = CorpusClip(path, options["num_frames"], sound is not None, size)
    long_path = write_silent_audio_video(os.path.join(folder, "long_silence.mkv"), seconds=180, size=size)
    clips["long_silence.mkv"] = CorpusClip(long_path, 2, True, size)
    return clips


def write_bad_files(folder: str, good_clip: str) -> dict[str, str]:
    """Files that are not usable videos, by kind: zero bytes, text renamed .mp4, truncated, flipped header bytes,
    audio only, a directory named .mp4, a dangling symbolic link and a FIFO."""
    os.makedirs(folder, exist_ok=True)
    data = open(good_clip, "rb").read()
    flipped = bytes(byte ^ 0xFF for byte in data[:64]) + data[64:]
    contents = {"empty.mp4": b"", "text.mp4": b"this is not a video\n" * 50, "truncated.mp4": data[: len(data) // 2],
                "flipped.mp4": flipped}
    paths = {}
    for name, content in contents.items():
        paths[name] = os.path.join(folder, name)
        with open(paths[name], "wb") as handle:
            handle.write(content)
    paths["audio_only.m4a"] = os.path.join(folder, "audio_only.m4a")
    with av.open(paths["audio_only.m4a"], "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        _encode_audio(container, stream, tone(440.0, 0.2, 16000).reshape(1, -1), 16000)
    paths["directory.mp4"] = os.path.join(folder, "directory.mp4")
    os.makedirs(paths["directory.mp4"], exist_ok=True)
    paths["dangling.mp4"] = os.path.join(folder, "dangling.mp4")
    os.symlink(os.path.join(folder, "does-not-exist.mp4"), paths["dangling.mp4"])
    paths["fifo.mp4"] = os.path.join(folder, "fifo.mp4")
    os.mkfifo(paths["fifo.mp4"])
    return paths


def write_multichannel_video(
    path: str, channels: int, audio_codec: str, sample_rate: int = 48000
) -> tuple[str, np.ndarray]:
    """A one-second clip whose sound has `channels` channels, channel `k` a sine of `110 (k + 1)` Hz at amplitude
    `0.05 (k + 1)` (every channel different, so a mix and the first channel differ); returns the path and the
    written waveform `[channels, samples]`."""
    t = np.arange(sample_rate) / sample_rate
    audio = np.stack([0.05 * (k + 1) * np.sin(2 * np.pi * 110 * (k + 1) * t) for k in range(channels)])
    audio = audio.astype(np.float32)
    write_test_video(path, num_frames=8, fps=8, audio=audio, sample_rate=sample_rate, audio_codec=audio_codec)
    return path, audio


def crash_on_planar_audio(path: str) -> list[np.ndarray]:
    """A decode function that really kills its process on a file with 8-channel planar sound: PyAV 18's own
    `AudioFrame.to_ndarray()` on such a frame reads a ninth plane that does not exist (segmentation fault). Other
    files give their first sound frame."""
    with av.open(path) as container:
        return [next(container.decode(audio=0)).to_ndarray()]


def png_bytes(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A black RGB PNG of any size in little memory: every row compresses to the same bytes after a full flush, so
    the image data is written once and repeated (a 16000x16000 16-bit image, 1.5 GB decoded, is 1.8 MB)."""
    row = bytes(1 + width * 3 * bit_depth // 8)  # filter type 0, then black samples
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    # All-zero data: Adler-32 is a = 1, b = length mod 65521.
    checksum = struct.pack(">I", ((len(row) * height % 65521) << 16) | 1)
    data = b"\x78\xda" + first + repeated * (height - 1) + compressor.flush() + checksum

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def write_png_video(path: str, width: int, height: int, bit_depth: int = 16) -> str:
    """A one-frame PNG video (`.mov`, `.avi`, `.nut`): FFmpeg learns its size only by decoding the frame."""
    with av.open(path, "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb48be" if bit_depth == 16 else "rgb24"
        packet = av.Packet(png_bytes(width, height, bit_depth))
        packet.pts = packet.dts = 0
        packet.time_base = Fraction(1, 1)
        packet.stream = stream
        container.mux(packet)
    return path
