"""Frame sampling and frame values of the PyAV decoding path, against hand computations and PIL."""

import av
import numpy as np
import pytest
from media import pattern_frame, tone, write_test_video
from PIL import Image

from modeling_avigate.processors import (
    DecodeSettings,
    FrameResizer,
    MediaError,
    decode_segments,
    frame_selection,
    read_video,
    sample_frame_indices,
    video_io,
)


# Our frames are scaled by FFmpeg's bicubic filter, the reference ones by PIL's; allowed difference in 0..255 units.
# Measured: mean 0.1-0.6, max 1-4 when downscaling; upscaling reaches 10 at hard edges (FFmpeg's cubic uses
# a = -0.6, PIL's a = -0.5).
MEAN_TOLERANCE, MAX_TOLERANCE = 1.0, 12


def pil_resize_crop(image: Image.Image, shortest_edge: int, crop: int) -> np.ndarray:
    """CLIP's geometry, computed independently with PIL: shorter side to `shortest_edge` (bicubic), centre crop."""
    width, height = image.size
    scale = shortest_edge / min(width, height)
    if width <= height:
        new_width, new_height = shortest_edge, int(height * scale)
    else:
        new_width, new_height = int(width * scale), shortest_edge
    resized = np.asarray(image.convert("RGB").resize((new_width, new_height), Image.Resampling.BICUBIC))
    top, left = (new_height - crop) // 2, (new_width - crop) // 2
    return resized[top : top + crop, left : left + crop]


def decoded_frames(path: str) -> list[Image.Image]:
    with av.open(path) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


@pytest.mark.parametrize("num_total, num_frames", [(100, 12), (300, 12), (13, 12), (97, 32), (12, 12)])
def test_uniform_sampling_matches_the_reference_linspace_rule(num_total, num_frames):
    times = np.arange(num_total) / 30.0
    expected = np.linspace(0, num_total - 1, num_frames).astype(int)
    np.testing.assert_array_equal(sample_frame_indices(times, num_frames), expected)


def test_short_clips_keep_every_frame():
    np.testing.assert_array_equal(sample_frame_indices(np.arange(5) / 25.0, 12), np.arange(5))


def test_sampling_follows_time_for_variable_frame_rate():
    # Frames 0-19 every 0.05 s, then frames 20-25 at 1.0, 1.5, ..., 3.5 s (after the 2 s start offset). The six
    # instants 0, 0.7, 1.4, 2.1, 2.8, 3.5 s show frames 0, 14, 20 (1.0-1.5 s), 22 (2.0-2.5 s), 23 (2.5-3.0 s), 25;
    # sampling by index would give 0, 5, 10, 15, 20, 25 and spend four of six frames on the first second.
    times = np.concatenate([np.arange(20) * 0.05, 1.0 + 0.5 * np.arange(6)]) + 2.0
    np.testing.assert_array_equal(sample_frame_indices(times, 6), [0, 14, 20, 22, 23, 25])


def test_one_frame_per_second_then_uniform():
    times = np.arange(300) / 30.0  # 10 s at 30 fps
    # One frame per second: frames 0, 30, ..., 270 (10 frames); then 4 of them, linspace(0, 9, 4) -> 0, 3, 6, 9.
    np.testing.assert_array_equal(sample_frame_indices(times, 4, sample_fps=1.0), [0, 90, 180, 270])
    np.testing.assert_array_equal(sample_frame_indices(times, 12, sample_fps=1.0), np.arange(0, 300, 30))


@pytest.mark.parametrize("codec, extension", [("h264", "mp4"), ("mpeg4", "mp4"), ("libvpx-vp9", "webm")])
def test_read_video_samples_the_right_frames_of_a_file(tmp_path, codec, extension):
    path = write_test_video(str(tmp_path / f"clip.{extension}"), num_frames=30, fps=10, size=(64, 48), codec=codec)
    clip = read_video(path, 12, 32, (32, 32))
    np.testing.assert_array_equal(clip.frame_indices, np.linspace(0, 29, 12).astype(int))
    np.testing.assert_allclose(clip.frame_times, clip.frame_indices / 10.0, atol=1e-3)


@pytest.mark.parametrize("extension, codec", [("mp4", "h264"), ("webm", "libvpx-vp9")])
def test_read_video_handles_variable_frame_rate_and_late_start(tmp_path, extension, codec):
    times = list(2.0 + 0.05 * np.arange(20)) + list(3.0 + 0.5 * np.arange(6))
    path = write_test_video(str(tmp_path / f"vfr.{extension}"), num_frames=26, fps=20, frame_times=times, codec=codec)
    clip = read_video(path, 6, 32, (32, 32))
    np.testing.assert_array_equal(clip.frame_indices, [0, 14, 20, 22, 23, 25])
    np.testing.assert_allclose(clip.frame_times, np.asarray(times)[[0, 14, 20, 22, 23, 25]], atol=1e-3)


@pytest.mark.parametrize(
    "codec, extension, size, shortest_edge",
    [
        ("h264", "mp4", (97, 61), 32),  # odd size (stored as yuv444p)
        ("mpeg4", "mp4", (97, 61), 32),
        ("libvpx-vp9", "webm", (61, 97), 32),  # portrait
        ("h264", "mp4", (320, 240), 224),
    ],
)
def test_frames_match_pil_on_the_decoded_frames(tmp_path, codec, extension, size, shortest_edge):
    path = write_test_video(str(tmp_path / f"clip.{extension}"), num_frames=8, fps=8, size=size, codec=codec)
    clip = read_video(path, 4, shortest_edge, (shortest_edge, shortest_edge))
    reference = decoded_frames(path)
    for frame, index in zip(clip.frames, clip.frame_indices):
        expected = pil_resize_crop(reference[index], shortest_edge, shortest_edge)
        difference = np.abs(frame.astype(np.float32) - expected)
        assert difference.mean() < MEAN_TOLERANCE and difference.max() <= MAX_TOLERANCE


@pytest.mark.parametrize("size", [(97, 61), (61, 97), (20, 16)])  # downscale, portrait, upscale
def test_frame_resizer_matches_pil_on_rgb_arrays(size):
    image = pattern_frame(3, *size)
    ours = FrameResizer(32, (32, 32))(av.VideoFrame.from_ndarray(image, format="rgb24")).astype(np.float32)
    difference = np.abs(ours - pil_resize_crop(Image.fromarray(image), 32, 32))
    assert difference.mean() < MEAN_TOLERANCE and difference.max() <= MAX_TOLERANCE


def test_crop_larger_than_the_resized_frame_is_zero_padded_like_transformers():
    image = np.full((97, 61, 3), 200, dtype=np.uint8)  # portrait: resized to 32 x 50 (width x height)
    ours = FrameResizer(32, (40, 40))(av.VideoFrame.from_ndarray(image, format="rgb24"))
    assert ours.shape == (40, 40, 3)
    assert np.all(ours[:, :4] == 0) and np.all(ours[:, 36:] == 0) and np.all(ours[:, 4:36] == 200)


def test_reading_a_small_file_twice_gives_identical_frames(tmp_path):
    # Regression: the planar-RGB conversion read uninitialised row padding on 40×32 frames, so every call differed.
    path = write_test_video(str(tmp_path / "small.mp4"), num_frames=6, fps=6, size=(40, 32))
    first = read_video(path, 3, 32, (32, 32), "BICUBIC", read_audio=False).frames
    for _ in range(3):
        np.testing.assert_array_equal(read_video(path, 3, 32, (32, 32), "BICUBIC", read_audio=False).frames, first)
    expected = [pil_resize_crop(image, 32, 32) for image in decoded_frames(path)]
    assert np.abs(first.astype(int) - np.stack(expected)[[0, 2, 5]].astype(int)).max() <= 12


def sequential_frames(path: str, resizer: FrameResizer) -> list[np.ndarray]:
    """Every frame of the file decoded in order (no seeking, no skipping), resized: the reference the keyframe-to-
    frame decoding must reproduce exactly."""
    with av.open(path) as container:
        return [resizer(frame) for frame in container.decode(video=0)]


@pytest.mark.parametrize("codec, extension, audio_codec", [
    ("h264", "mp4", "aac"), ("libvpx-vp9", "webm", "libopus"), ("mpeg4", "avi", "mp3")
])
def test_segments_sample_their_span_and_cut_their_sound(tmp_path, codec, extension, audio_codec):
    # 10 s at 10 fps, a keyframe every 12 frames (h264 adds B-frames): segments of 4 s every 3 s.
    rate = 48000 if audio_codec == "libopus" else 16000
    path = write_test_video(str(tmp_path / f"clip.{extension}"), num_frames=100, fps=10, size=(64, 48), codec=codec,
                            gop_size=12, audio=tone(330.0, 10.0, rate), sample_rate=rate, audio_codec=audio_codec)
    settings = DecodeSettings(num_frames=6, shortest_edge=32, crop_size=(32, 32), segment_seconds=4.0,
                              stride_seconds=3.0)
    segments = list(decode_segments(path, settings))
    whole = read_video(path, 100, 32, (32, 32))  # every frame and its time, the whole sound track
    reference = sequential_frames(path, FrameResizer(32, (32, 32)))
    assert [segment.index for segment in segments] == list(range(len(segments)))
    assert len(segments) == segments[0].num_segments == 1 + int(np.ceil((segments[0].duration - 4.0) / 3.0))
    for segment in segments:
        assert segment.start == pytest.approx(3.0 * segment.index)
        last = segment.index == len(segments) - 1
        assert segment.end == pytest.approx(segment.duration if last else segment.start + 4.0)
        # The frames shown in [start, end) are i / 10 s: sampled by the reference rule among them.
        first = int(round(segment.start * 10))
        stop = 100 if last else int(round(segment.end * 10))
        expected = first + np.linspace(0, stop - 1 - first, 6).astype(int)
        np.testing.assert_array_equal(segment.frame_indices, expected)
        np.testing.assert_array_equal(segment.frame_times, whole.frame_times[expected])
        np.testing.assert_array_equal(segment.frames, np.stack([reference[i] for i in expected]))
        # The sound is the whole track's samples of the span (one continuous resampling, so equal).
        begin = int(round(segment.start * 16000))
        end = whole.audio.size if last else int(round(segment.end * 16000))
        np.testing.assert_allclose(segment.audio, whole.audio[begin:end], atol=1e-6)
        assert segment.audio_samples == end - begin


def test_a_file_shorter_than_a_segment_is_the_whole_file(tmp_path):
    path = write_test_video(str(tmp_path / "clip.mp4"), num_frames=30, fps=10, size=(64, 48),
                            audio=tone(440.0, 3.0, 44100, channels=2), sample_rate=44100)
    (segment,) = decode_segments(path, DecodeSettings(num_frames=12, shortest_edge=32, crop_size=(32, 32),
                                                      segment_seconds=10.0))
    whole = read_video(path, 12, 32, (32, 32))
    assert (segment.index, segment.num_segments, segment.start) == (0, 1, 0.0)
    assert segment.end == pytest.approx(segment.duration) and segment.duration >= 3.0
    for field in ("frames", "frame_indices", "frame_times", "audio"):
        np.testing.assert_array_equal(getattr(segment, field), getattr(whole, field))
    assert (segment.width, segment.height, segment.rotation, segment.audio_samples) == (
        whole.width, whole.height, whole.rotation, whole.audio_samples)


def test_sampled_frames_equal_decoding_every_frame_and_fewer_packets_are_decoded(tmp_path):
    """Decoding from the keyframe before each sampled frame gives the frames a full sequential decode gives, and
    decodes only the packets from that keyframe up to the frame."""
    path = write_test_video(str(tmp_path / "clip.mp4"), num_frames=120, fps=24, size=(64, 48), gop_size=10)
    clip = read_video(path, 4, 32, (32, 32), read_audio=False)
    reference = sequential_frames(path, FrameResizer(32, (32, 32)))
    np.testing.assert_array_equal(clip.frame_indices, np.linspace(0, 119, 4).astype(int))
    np.testing.assert_array_equal(clip.frames, np.stack([reference[i] for i in clip.frame_indices]))
    with av.open(path) as container:
        timeline = video_io._demux_timeline(path, container, container.streams.video[0], [])
    assert timeline.keyframe.sum() >= 12
    ranges = frame_selection.FrameSelector(timeline, clip.frame_indices).ranges
    assert sum(stop - start + 1 for start, stop in ranges) <= 4 * 12  # of 120 packets


def test_the_file_is_opened_once_for_all_its_segments_and_posters(tmp_path, monkeypatch):
    path = write_test_video(str(tmp_path / "clip.mp4"), num_frames=60, fps=10, size=(64, 48), rotation=90,
                            audio=tone(440.0, 6.0, 16000))
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args[0]) or real_open(*args, **kwargs))
    settings = DecodeSettings(num_frames=4, shortest_edge=32, crop_size=(32, 32), segment_seconds=2.0,
                              poster_size=40)
    segments = list(decode_segments(path, settings))
    assert opened == [path] and len(segments) == 3
    monkeypatch.undo()
    for segment in segments:
        # The poster is the middle sampled frame, upright, longer side 40: compared with PIL on the full frame.
        middle = int(segment.frame_indices[len(segment.frame_indices) // 2])
        assert segment.poster.shape == (30, 40, 3)
        expected = np.asarray(Image.fromarray(pattern_frame(middle, 64, 48)).resize((40, 30), Image.Resampling.BICUBIC))
        assert np.abs(segment.poster.astype(int) - expected).mean() < 6


def test_segments_after_the_end_of_a_short_sound_track_have_no_sound(tmp_path):
    path = write_test_video(str(tmp_path / "clip.mkv"), num_frames=60, fps=10, size=(64, 48),
                            audio=tone(440.0, 1.5, 16000), audio_codec="flac")
    segments = list(decode_segments(path, DecodeSettings(num_frames=4, shortest_edge=32, crop_size=(32, 32),
                                                         segment_seconds=2.0)))
    whole = read_video(path, 4, 32, (32, 32))
    assert len(segments) == 3 and whole.audio_samples == 24000
    np.testing.assert_array_equal(segments[0].audio, whole.audio[:24000])
    assert [segment.audio_samples for segment in segments] == [24000, 0, 0]
    assert segments[1].audio is None and segments[2].audio is None


def test_decode_segments_raises_the_media_error_naming_the_file_when_iterated(tmp_path):
    segments = decode_segments(str(tmp_path / "missing.mp4"), DecodeSettings())
    with pytest.raises(MediaError, match="missing.mp4: file not found"):
        next(segments)
