"""AvigateFeatureExtractor against transformers' ASTFeatureExtractor and hand computations; sound tracks from files."""

import numpy as np
import pytest
from media import tone, write_test_video
from transformers import ASTFeatureExtractor

from modeling_avigate.processors import AvigateFeatureExtractor, read_video
from modeling_avigate.processors.audio_decoding import resample_audio
from modeling_avigate.processors.feature_extraction_avigate import AVIGATE_MEAN, AVIGATE_STD


RATE = 16000


def kaldi_mel(frequency: float) -> float:
    return 1127.0 * np.log(1.0 + frequency / 700.0)


def expected_mel_bin(frequency: float, num_bins: int = 128, low: float = 20.0, high: float = 8000.0) -> int:
    """Kaldi's triangular filters are equally spaced in mel between `low` and `high`: the filter whose centre is
    nearest the tone's mel value responds most."""
    delta = (kaldi_mel(high) - kaldi_mel(low)) / (num_bins + 1)
    centres = kaldi_mel(low) + delta * np.arange(1, num_bins + 1)
    return int(np.argmin(np.abs(centres - kaldi_mel(frequency))))


def features(waveform: np.ndarray, **kwargs) -> np.ndarray:
    return AvigateFeatureExtractor(**kwargs)(waveform, sampling_rate=RATE, return_tensors="np")["input_values"][0]


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(163840) + 0.02).astype(np.float32)  # 10.24 s, with a DC offset


@pytest.mark.parametrize("seconds", [3.0, 10.24, 12.0])
def test_ast_mode_equals_transformers_ast_feature_extractor(noise, seconds):
    waveform = np.resize(noise, int(seconds * RATE))
    expected = ASTFeatureExtractor()(waveform, sampling_rate=RATE, return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(features(waveform, mode="ast"), expected, atol=1e-5)


def test_avigate_mode_equals_ast_mode_before_normalisation_for_10_24_seconds(noise):
    # 163840 samples / 1024 frames = 160 samples = exactly AST's 10 ms shift.
    raw_avigate = features(noise, do_normalize=False)
    np.testing.assert_allclose(raw_avigate, features(noise, mode="ast", do_normalize=False), atol=1e-6)
    np.testing.assert_allclose(features(noise), (raw_avigate + 5.118) / (2 * 3.2527153), atol=1e-6)
    assert (AVIGATE_MEAN, AVIGATE_STD) == (-5.118, 3.2527153)
    # 1 + (163840 - 400) // 160 = 1022 analysis frames, then two zero rows of padding.
    assert np.all(raw_avigate[:1022] != 0) and np.all(raw_avigate[1022:] == 0)


@pytest.mark.parametrize("seconds", [1.0, 4.0, 30.0])
def test_avigate_mode_stretches_any_duration_over_1024_frames(seconds):
    waveform = tone(1000.0, seconds, RATE)
    hop = len(waveform) // 1024
    raw = features(waveform, do_normalize=False)
    real_rows = min(1024, 1 + (len(waveform) - 400) // hop)
    assert real_rows > 1000  # the whole clip is covered, whatever its length
    assert np.all(raw[:real_rows] != 0) and np.all(raw[real_rows:] == 0)


def test_440_hz_tone_lands_in_the_right_mel_bin():
    raw = features(tone(440.0, 2.0, RATE), do_normalize=False)
    # By hand: mel(440) = 549.6, mel(20) = 31.7, spacing (2840.0 - 31.7) / 129 = 21.77 -> centre index 22.8 -> bin 23.
    assert expected_mel_bin(440.0) == 23
    assert int(np.argmax(raw[:1000].mean(axis=0))) == expected_mel_bin(440.0)


def test_audio_shorter_than_one_window_gives_one_frame():
    raw = features(tone(440.0, 0.01, RATE), do_normalize=False)  # 160 samples < 400
    assert np.all(np.isfinite(raw)) and np.all(raw[0] != 0) and np.all(raw[1:] == 0)


def test_silence_gives_the_log_floor_everywhere():
    raw = features(np.zeros(RATE, dtype=np.float32), do_normalize=False)
    np.testing.assert_allclose(raw[:1000], np.log(np.float32(1.192092955078125e-07)), rtol=1e-6)


def test_other_rates_are_resampled_and_channels_reduced():
    extractor = AvigateFeatureExtractor()
    at_44k = tone(440.0, 1.0, 44100)
    expected = extractor(resample_audio(at_44k, 44100, RATE), return_tensors="np")["input_values"]
    resampled = extractor(at_44k, sampling_rate=44100, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(resampled, expected)
    stereo = np.stack([tone(440.0, 1.0, RATE), tone(880.0, 1.0, RATE)])
    for channel, mono in (("mix", stereo.mean(axis=0)), ("first", stereo[0])):
        by_channel = AvigateFeatureExtractor(audio_channel=channel)
        batch = by_channel([stereo, stereo.T, None], sampling_rate=RATE, return_tensors="np")
        np.testing.assert_array_equal(batch["input_values"][0], features(mono))
        np.testing.assert_array_equal(batch["input_values"][1], features(mono))
        assert batch["has_audio"].tolist() == [True, True, False] and np.all(batch["input_values"][2] == 0)
    for bad_rate in (0, -16000, 16000.0, True):
        with pytest.raises(ValueError, match="sampling_rate"):
            extractor(at_44k, sampling_rate=bad_rate)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        extractor([np.zeros((2, 2, 1000), np.float32)], sampling_rate=RATE)


def test_save_and_load_keep_the_mode(tmp_path):
    AvigateFeatureExtractor(mode="ast").save_pretrained(tmp_path)
    loaded = AvigateFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.mode, loaded.mean, loaded.std, loaded.audio_channel) == ("ast", -4.2677393, 4.5689974, "mix")


@pytest.mark.parametrize(
    "extension, audio_codec, rate, channels",
    [
        ("mp4", "aac", 44100, 2),
        ("mp4", "aac", 48000, 6),
        ("mp4", "aac", 8000, 1),
        ("webm", "libopus", 48000, 2),
        ("mkv", "flac", 16000, 1),
    ],
)
def test_sound_tracks_are_decoded_resampled_and_mixed_to_mono(tmp_path, extension, audio_codec, rate, channels):
    codec = "libvpx-vp9" if extension == "webm" else "h264"
    path = write_test_video(
        str(tmp_path / f"clip.{extension}"), num_frames=4, fps=4, codec=codec,
        audio=tone(440.0, 1.0, rate, channels), sample_rate=rate, audio_codec=audio_codec,
    )
    for channel in ("mix", "first"):
        clip = read_video(path, 4, 32, (32, 32), audio_channel=channel)
        # About one second at 16 kHz (encoders add priming and padding), amplitude kept by the downmix.
        assert clip.audio.dtype == np.float32 and 0.95 * RATE < len(clip.audio) < 1.2 * RATE
        assert 0.4 < np.abs(clip.audio).max() < 0.6
        raw = features(clip.audio, do_normalize=False)
        assert int(np.argmax(raw[100:900].mean(axis=0))) == expected_mel_bin(440.0)


def test_no_sound_track_gives_none_and_silent_track_gives_zeros(tmp_path):
    mute = write_test_video(str(tmp_path / "mute.mp4"), num_frames=4, fps=4)
    silent = write_test_video(str(tmp_path / "silent.mp4"), num_frames=4, fps=4, audio=np.zeros(RATE, np.float32))
    assert read_video(mute, 4, 32, (32, 32)).audio is None
    waveform = read_video(silent, 4, 32, (32, 32)).audio
    assert waveform.size > 0 and np.abs(waveform).max() < 1e-4
