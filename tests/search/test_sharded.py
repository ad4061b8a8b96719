"""Sharded builds: a long file's segments cut across processes (each decoding only its slice), the merge equal to a
one-process build, and updates of an existing index that embed only new or changed files. The processes are
simulated in this one (plan, shares, merge called in turn); `tests/cli/test_cli.py` runs two real ones."""

import numpy as np
import pytest

from modeling_avigate.embedding import EmbeddingOptions, decode_settings
from modeling_avigate.processors import decode_segments

from builders import tiny_processor_and_model
from media import tone, write_test_video


FPS = 8
LONG_SECONDS = 12


def segmented(**overrides) -> EmbeddingOptions:
    return EmbeddingOptions(progress=False, segment_seconds=1.0, batch_size=3, **overrides)


def write_long(path: str, seconds: int = LONG_SECONDS, sample_rate: int = 16000) -> str:
    """`seconds` of moving pattern with a keyframe every 2 s and a different tone every second (AAC)."""
    sound = np.concatenate([tone(150.0 * (1 + second % 5), 1.0, sample_rate) for second in range(seconds)])
    return write_test_video(path, num_frames=FPS * seconds, fps=FPS, size=(48, 32), audio=sound,
                            sample_rate=sample_rate, gop_size=2 * FPS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    processor, model = tiny_processor_and_model(root)
    folder = root / "videos"
    folder.mkdir()
    long_file = write_long(str(folder / "long.mp4"))
    shorts = [write_test_video(str(folder / f"short-{n}.mp4"), num_frames=6, fps=FPS, size=(40, 32),
                               audio=tone(300.0 + 200 * n, 0.75, 16000) if n != 1 else None) for n in range(3)]
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return {"root": root, "processor": processor, "model": model, "folder": folder, "long": long_file,
            "shorts": shorts}


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_a_slice_of_segments_decodes_as_the_same_segments_of_a_whole_decode(setup, tmp_path, sample_rate):
    """Frames, times, posters and sound (also resampled from 48 kHz) exactly as the whole file's decode gives them."""
    path = setup["long"] if sample_rate == 16000 else write_long(str(tmp_path / "long.mp4"), sample_rate=sample_rate)
    settings = decode_settings(setup["processor"], segmented())
    whole = list(decode_segments(path, settings))
    assert len(whole) == LONG_SECONDS and {segment.num_segments for segment in whole} == {LONG_SECONDS}
    pieces = [list(decode_segments(path, settings, piece)) for piece in (slice(0, 5), slice(5, 9), slice(9, None))]
    assert [[segment.num_segments for segment in piece] for piece in pieces] == [[5] * 5, [4] * 4, [3] * 3]
    for expected, actual in zip(whole, [segment for piece in pieces for segment in piece]):
        assert (actual.index, actual.start, actual.end, actual.duration) == (expected.index, expected.start,
                                                                             expected.end, expected.duration)
        assert np.array_equal(actual.frame_times, expected.frame_times)
        assert np.array_equal(actual.frames, expected.frames) and np.array_equal(actual.poster, expected.poster)
        assert np.array_equal(actual.audio, expected.audio)
    assert list(decode_segments(path, settings, slice(LONG_SECONDS, None))) == []
