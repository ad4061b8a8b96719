"""Decoding in child processes: a file that kills its decoder becomes a MediaError and the run goes on."""

import functools

import numpy as np
from media import crash_on_planar_audio, tone, write_multichannel_video, write_test_video

from modeling_avigate.isolated_decoding import decode_isolated
from modeling_avigate.processors import DecodeSettings, MediaError, VideoSegment, decode_segments, read_video


def test_a_file_that_kills_its_decoder_is_reported_and_the_next_files_decode(tmp_path):
    good = [write_test_video(str(tmp_path / f"good{i}.mp4"), num_frames=4, fps=4, audio=tone(220.0 * (i + 1), 1.0,
                                                                                              16000))
            for i in range(2)]
    killer, _ = write_multichannel_video(str(tmp_path / "seven_one.mp4"), 8, "aac")
    paths = [good[0], killer, good[1]]
    results = list(decode_isolated(paths, crash_on_planar_audio, num_workers=2))
    assert [path for path, _ in results] == paths  # one result each, in order
    error = results[1][1]
    assert isinstance(error, MediaError) and error.path == killer
    assert str(error) == f"{killer}: decoder crashed: signal 11 (SIGSEGV)"
    for path, result in (results[0], results[2]):
        np.testing.assert_array_equal(result, crash_on_planar_audio(path)[0])


def test_segments_and_media_errors_come_back_from_the_workers(tmp_path):
    clip = write_test_video(str(tmp_path / "clip.mp4"), num_frames=40, fps=10, audio=tone(440.0, 4.0, 16000))
    seven_one, _ = write_multichannel_video(str(tmp_path / "seven_one.mp4"), 8, "aac")
    missing = str(tmp_path / "missing.mp4")
    settings = DecodeSettings(num_frames=4, shortest_edge=32, crop_size=(32, 32), segment_seconds=2.0)
    decode = functools.partial(decode_segments, settings=settings)
    results = list(decode_isolated([clip, missing, seven_one], decode))
    assert [path for path, _ in results] == [clip, clip, missing, seven_one]
    local = list(decode_segments(clip, settings))
    for (_, remote), expected in zip(results[:2], local):
        assert isinstance(remote, VideoSegment)
        np.testing.assert_array_equal(remote.frames, expected.frames)
        np.testing.assert_array_equal(remote.audio, expected.audio)
    assert isinstance(results[2][1], MediaError) and "file not found" in str(results[2][1])
    whole = read_video(seven_one, 4, 32, (32, 32))
    np.testing.assert_array_equal(results[3][1].audio, whole.audio)  # 7.1 decodes since the sound goes through FFmpeg
