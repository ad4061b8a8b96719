"""Decoding a generated media corpus: frame counts, upright frames, sound tracks, bad files, fresh processes, memory."""

import hashlib
import json
import os
import pickle
import subprocess
import sys

import av
import numpy as np
import pytest
from builders import REPO
from media import (
    CORPUS,
    pattern_frame,
    write_bad_files,
    write_corpus,
    write_multichannel_video,
    write_png_video,
    write_silent_audio_video,
    write_test_video,
)
from PIL import Image

from modeling_avigate.processors import AvigateFeatureExtractor, MediaError, read_video
from modeling_avigate.processors.audio_decoding import resample_audio


SIZE = (64, 48)
CROP = 32
PROCESSORS = os.path.join(REPO, "processors")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus")), size=SIZE)


def upright_reference(index: int) -> np.ndarray:
    """The pattern as a viewer sees it, resized and cropped with PIL (independent of our FFmpeg path)."""
    width, height = SIZE
    image = Image.fromarray(pattern_frame(index, width, height))
    new_width, new_height = int(CROP * width / height), CROP
    resized = np.asarray(image.resize((new_width, new_height), Image.Resampling.BICUBIC), dtype=np.float32)
    left = (new_width - CROP) // 2
    return resized[:, left : left + CROP]


@pytest.mark.parametrize("name", [*CORPUS, "long_silence.mkv"])
def test_corpus_file_decodes_to_its_frames_orientation_and_sound(corpus, name):
    clip = corpus[name]
    decoded = read_video(clip.path, 12, CROP, (CROP, CROP))
    assert len(decoded.frames) == clip.num_frames
    assert (decoded.audio is not None) == clip.has_audio
    assert (decoded.width, decoded.height) == clip.size
    first = decoded.frames[0].astype(np.float32)
    reference = upright_reference(0)
    # Lossy codecs move pixels a little; a frame on its side or upside down differs by far more.
    assert np.abs(first - reference).mean() < 12
    for turns in (1, 2, 3):
        assert np.abs(first - np.rot90(reference, turns)).mean() > 40


def test_rotation_is_read_from_the_display_matrix(corpus):
    assert read_video(corpus["rotate_90.mp4"].path, 2, CROP, (CROP, CROP)).rotation == 90
    assert read_video(corpus["rotate_270.mp4"].path, 2, CROP, (CROP, CROP)).rotation == 270
    assert read_video(corpus["no_audio.mp4"].path, 2, CROP, (CROP, CROP)).rotation == 0


def test_sound_track_lengths_follow_the_file(corpus):
    rate = 16000
    for name, seconds in (("audio_longer.mp4", 3.0), ("audio_shorter.mkv", 0.2), ("long_silence.mkv", 180.0)):
        samples = read_video(corpus[name].path, 2, CROP, (CROP, CROP)).audio_samples
        assert abs(samples - seconds * rate) < 0.05 * rate, name  # codec priming and padding only


def test_long_sound_track_keeps_only_the_fbank_windows_and_gives_the_same_features(tmp_path):
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((2, 44100 * 30))).astype(np.float32)
    path = write_test_video(str(tmp_path / "noise.mkv"), num_frames=2, fps=1, audio=noise, sample_rate=44100,
                            audio_codec="flac")
    extractor = AvigateFeatureExtractor()
    whole = read_video(path, 2, CROP, (CROP, CROP))
    windows = read_video(path, 2, CROP, (CROP, CROP), max_audio_samples=1024 * 400,
                         long_audio_windows=extractor.long_audio_windows())
    assert whole.audio.size == whole.audio_samples > 1024 * 400 and windows.audio.size == 1024 * 400
    expected = extractor(whole.audio, sampling_rate=16000)["input_values"][0]
    np.testing.assert_allclose(extractor(windows.audio, sampling_rate=16000)["input_values"][0], expected, atol=1e-5)
    # AST mode reads the first 10 s only: a long track is cut at the cap, exactly.
    cut = read_video(path, 2, CROP, (CROP, CROP), max_audio_samples=1024 * 400)
    np.testing.assert_array_equal(cut.audio, whole.audio[: 1024 * 400])


def test_frames_above_the_pixel_limit_are_refused(corpus):
    with pytest.raises(MediaError, match=r"no_audio.mp4: frames of 64x48 exceed the limit of 3000 pixels"):
        read_video(corpus["no_audio.mp4"].path, 2, CROP, (CROP, CROP), max_pixels=3000)


def test_bad_files_raise_the_media_error_naming_the_file(corpus, tmp_path):
    reasons = {
        "empty.mp4": "empty", "text.mp4": "cannot be read as media", "truncated.mp4": "cannot be read as media",
        "flipped.mp4": "cannot be read as media", "audio_only.m4a": "no video stream",
        "directory.mp4": "is a directory", "dangling.mp4": "dangling symbolic link", "fifo.mp4": "not a regular file",
    }
    bad = write_bad_files(str(tmp_path / "bad"), corpus["no_audio.mp4"].path)
    assert set(bad) == set(reasons)
    for name, path in bad.items():
        with pytest.raises(MediaError, match=rf"^{path}: .*{reasons[name]}"):
            read_video(path, 4, CROP, (CROP, CROP))
    with pytest.raises(MediaError, match="missing.mp4: file not found"):
        read_video(str(tmp_path / "missing.mp4"), 4, CROP, (CROP, CROP))


def test_media_error_is_a_value_error_that_survives_pickling():
    error = pickle.loads(pickle.dumps(MediaError("clip.mp4", "the file is empty (0 bytes)")))
    assert isinstance(error, ValueError) and (error.path, error.reason) == ("clip.mp4", "the file is empty (0 bytes)")
    assert str(error) == "clip.mp4: the file is empty (0 bytes)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_raises_the_media_error(corpus, tmp_path):
    path = tmp_path / "locked.mp4"
    path.write_bytes(open(corpus["no_audio.mp4"].path, "rb").read())
    path.chmod(0)
    with pytest.raises(MediaError, match="locked.mp4: permission denied"):
        read_video(str(path), 4, CROP, (CROP, CROP))


# Loads the decoder's modules of processors/ as a bare package, without its __init__ (numpy, PyAV, PIL; no torch or
# transformers), so each fresh process starts fast.
FINGERPRINT_SCRIPT = """
import hashlib, importlib, json, sys, types
package = types.ModuleType("decoder")
package.__path__ = [sys.argv[1]]
sys.modules["decoder"] = package
video_io = importlib.import_module("decoder.video_io")
digests = {}
for path in sys.argv[2:]:
    clip = video_io.read_video(path, 12, 32, (32, 32))
    audio = b"" if clip.audio is None else clip.audio.tobytes()
    digests[path] = hashlib.sha256(clip.frames.tobytes() + audio).hexdigest()
print(json.dumps(digests))
"""


def test_every_corpus_file_decodes_identically_in_ten_fresh_processes(corpus):
    paths = [clip.path for clip in corpus.values()]
    runs = []
    for _ in range(10):
        result = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT, PROCESSORS, *paths], capture_output=True,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    assert all(run == runs[0] for run in runs) and set(runs[0]) == set(paths)
    in_process = read_video(corpus["h264_aac_stereo_44k.mp4"].path, 12, 32, (32, 32))
    digest = hashlib.sha256(in_process.frames.tobytes() + in_process.audio.tobytes()).hexdigest()
    assert runs[0][corpus["h264_aac_stereo_44k.mp4"].path] == digest


# Peak RSS from VmHWM: getrusage's ru_maxrss keeps the forking parent's peak across exec, VmHWM is this process's.
PEAK_RSS_SCRIPT = """
import importlib, sys, types
package = types.ModuleType("decoder")
package.__path__ = [sys.argv[1]]
sys.modules["decoder"] = package
video_io = importlib.import_module("decoder.video_io")
clip = video_io.read_video(sys.argv[2], 12, 224, (224, 224), long_audio_windows=(1024, 400))
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib * 1024, clip.audio_samples, len(clip.frames))
"""


def peak_rss_of_decoding(path: str) -> tuple[int, int, int]:
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, PROCESSORS, path], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    rss, samples, frames = (int(value) for value in result.stdout.split())
    return rss, samples, frames


@pytest.mark.slow
def test_two_hour_sound_track_and_8k_frames_decode_under_1_gb(tmp_path):
    long_path = write_silent_audio_video(str(tmp_path / "two_hours.mkv"), seconds=2 * 3600)
    rss, samples, _ = peak_rss_of_decoding(long_path)
    assert abs(samples - 2 * 3600 * 16000) < 16000
    assert rss < 1 << 30, f"{rss / 2**20:.0f} MiB"
    uhd = write_test_video(str(tmp_path / "8k.mp4"), num_frames=2, fps=2, size=(7680, 4320), codec="mpeg4")
    rss, _, frames = peak_rss_of_decoding(uhd)
    assert frames == 2 and rss < 1 << 30, f"{rss / 2**20:.0f} MiB"


# Decodes each file's sound in a fresh process, so that a crash fails this test instead of killing the test run.
SOUND_SCRIPT = """
import importlib, sys, types
import numpy as np
package = types.ModuleType("decoder")
package.__path__ = [sys.argv[1]]
sys.modules["decoder"] = package
video_io = importlib.import_module("decoder.video_io")
for path in sys.argv[2:]:
    for channel in ("mix", "first"):
        np.save(f"{path}.{channel}.npy", video_io.read_video(path, 4, 32, (32, 32), audio_channel=channel).audio)
"""


def packed_reference(path: str, channel: str) -> np.ndarray:
    """The file's sound reduced without our filter graph: decoded to packed float (one plane, which PyAV reads
    correctly), the channels averaged (or the first kept) in numpy, then resampled to 16 kHz."""
    resampler = av.AudioResampler(format="flt")
    with av.open(path) as container:
        stream = container.streams.audio[0]
        channels, rate = stream.codec_context.layout.nb_channels, stream.sample_rate
        parts = [out.to_ndarray().reshape(-1, channels) for frame in container.decode(stream)
                 for out in resampler.resample(frame)]
    samples = np.concatenate(parts)
    return resample_audio(samples.mean(axis=1) if channel == "mix" else samples[:, 0], rate, 16000)


def test_sound_with_7_8_and_16_channels_decodes_to_the_channel_mean(tmp_path):
    """Regression: an 8-channel sound track (AAC 7.1 in mp4, 8-channel PCM in mkv) killed the process with a
    segmentation fault in PyAV 18's `AudioFrame.to_ndarray()`."""
    files = {
        "aac_7.1.mp4": write_multichannel_video(str(tmp_path / "aac_7.1.mp4"), 8, "aac"),
        "pcm_8ch.mkv": write_multichannel_video(str(tmp_path / "pcm_8ch.mkv"), 8, "pcm_s16le"),
        "aac_6.1.mp4": write_multichannel_video(str(tmp_path / "aac_6.1.mp4"), 7, "aac"),
        "pcm_16ch.mkv": write_multichannel_video(str(tmp_path / "pcm_16ch.mkv"), 16, "pcm_s16le"),
    }
    result = subprocess.run([sys.executable, "-c", SOUND_SCRIPT, PROCESSORS, *(path for path, _ in files.values())],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    for name, (path, written) in files.items():
        for channel in ("mix", "first"):
            ours = np.load(f"{path}.{channel}.npy")
            np.testing.assert_allclose(ours, packed_reference(path, channel), atol=1e-6, err_msg=f"{name} {channel}")
            if name.startswith("pcm"):  # lossless: also the written signal itself, to 16-bit quantisation
                mono = written.mean(axis=0) if channel == "mix" else written[0]
                np.testing.assert_allclose(ours, resample_audio(mono, 48000, 16000), atol=2e-4, err_msg=name)
        mix, first = np.load(f"{path}.mix.npy"), np.load(f"{path}.first.npy")
        assert np.abs(mix - first).max() > 0.01  # the channels differ, so the mix is not one channel


PNG_BOMB_SCRIPT = """
import importlib, sys, types
package = types.ModuleType("decoder")
package.__path__ = [sys.argv[1]]
sys.modules["decoder"] = package
video_io = importlib.import_module("decoder.video_io")
try:
    video_io.read_video(sys.argv[2], 12, 224, (224, 224))
    message = "decoded"
except video_io.MediaError as error:
    message = str(error)
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib * 1024, message)
"""


def test_an_oversized_image_codec_frame_is_refused_before_ffmpeg_decodes_it(tmp_path):
    """Regression: opening the file decoded its first frame while probing (a 1.8 MB 16000x16000 16-bit PNG video
    reached 1.5 GB before the refusal)."""
    bomb = write_png_video(str(tmp_path / "bomb.mov"), 16000, 16000)
    assert os.path.getsize(bomb) < 4 << 20
    result = subprocess.run([sys.executable, "-c", PNG_BOMB_SCRIPT, PROCESSORS, bomb], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    rss, message = result.stdout.split(maxsplit=1)
    assert message.startswith(bomb) and "max_pixels" in message, message
    assert int(rss) < 300 << 20, f"{int(rss) / 2**20:.0f} MiB"
    small = read_video(write_png_video(str(tmp_path / "small.mov"), 64, 48), 2, CROP, (CROP, CROP))
    assert small.frames.shape == (1, CROP, CROP, 3) and (small.width, small.height) == SIZE
    assert not small.frames.any()  # the PNG is black
