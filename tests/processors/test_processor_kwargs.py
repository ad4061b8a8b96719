"""AvigateProcessor's typed call keywords: each reaches the part that uses it, for one call only; unknown ones warn."""

import logging

import numpy as np
import pytest
from media import tone, write_test_video
from transformers import CLIPTokenizer

from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor, read_video


@pytest.fixture
def processor(tiny_tokenizer_dir) -> AvigateProcessor:
    video_processor = AvigateVideoProcessor(size=32, crop_size=32, num_frames=6)
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_tokenizer_dir), model_max_length=12)
    return AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("media")
    return write_test_video(str(folder / "clip.mp4"), num_frames=12, fps=12, size=(48, 40))


def test_call_time_frame_settings_apply_to_one_call_only(processor, video):
    flat = processor(videos=[video], num_frames=3, crop_size=16, return_tensors="np")
    grouped = processor(videos=[video], videos_kwargs={"num_frames": 3, "crop_size": {"height": 16, "width": 16}},
                        return_tensors="np")
    assert flat["pixel_values"].shape == (1, 3, 3, 16, 16)
    np.testing.assert_array_equal(flat["pixel_values"], grouped["pixel_values"])
    # The saved settings are untouched: the next call uses them again.
    assert processor(videos=[video], return_tensors="np")["pixel_values"].shape == (1, 6, 3, 32, 32)
    assert processor.video_processor.num_frames == 6
    assert processor.video_processor.crop_size == {"height": 32, "width": 32}


def test_call_time_normalisation_reaches_the_frames(processor, video):
    raw = processor(videos=[video], do_normalize=False, rescale_factor=1.0, return_tensors="np")["pixel_values"]
    assert raw.min() >= 0 and raw.max() > 1  # 0..255 pixel values: neither rescaled nor normalised
    normalised = processor(videos=[video], return_tensors="np")["pixel_values"]
    mean, std = np.asarray(processor.video_processor.image_mean), np.asarray(processor.video_processor.image_std)
    expected = (raw / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(normalised, expected, atol=1e-5)


def test_text_kwargs_reach_the_tokenizer(processor):
    captions = ["a dog", "a red car drives left"]
    default = processor(text=captions, return_tensors="np")
    longest = processor(text=captions, text_kwargs={"padding": "longest"}, return_tensors="np")
    short = processor(text=captions, max_length=4, return_tensors="np")
    assert default["input_ids"].shape == (2, 12)
    assert longest["input_ids"].shape == (2, 7)  # BOS + 5 words + EOS
    assert short["input_ids"].shape == (2, 4)
    assert short["input_ids"][1, -1] == processor.tokenizer.eos_token_id  # truncation keeps EOS


def test_sampling_rate_flat_or_in_audio_kwargs(processor):
    waveform = tone(440.0, 0.5, 44100)
    flat = processor(audio=[waveform], sampling_rate=44100, return_tensors="np")
    grouped = processor(audio=[waveform], audio_kwargs={"sampling_rate": 44100}, return_tensors="np")
    np.testing.assert_array_equal(flat["input_values"], grouped["input_values"])
    assert flat["has_audio"].tolist() == [True]


def test_unknown_and_misplaced_keywords_are_reported(processor, video, caplog):
    with caplog.at_level(logging.WARNING):
        processor(text=["a dog"], not_a_processor_option=3)
    assert "not_a_processor_option" in caplog.text
    with pytest.raises(TypeError, match="not `images`"):
        processor(text=["a dog"], images=[np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(TypeError, match="videos_kwargs"):
        processor(videos=[video], images_kwargs={"do_resize": False})
    with pytest.raises(ValueError, match="do_resize"):
        processor(videos=[video], do_resize=False)
    with pytest.raises(ValueError, match="video_metadata"):
        processor(videos=[video], return_metadata=True)
    with pytest.raises(ValueError, match="num_frames"):
        processor(videos=[video], num_frames=0)
    with pytest.raises(ValueError, match="num_frames"):
        processor(videos=[video], num_frames="3")


def test_channels_first_arrays_and_unsampled_frames(processor):
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 30, 40, 3), dtype=np.uint8)
    channels_last = processor(videos=[frames], return_tensors="np")["pixel_values"]
    channels_first = processor(videos=[frames.transpose(0, 3, 1, 2)], return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(channels_last, channels_first)
    # Without sampling every given frame is kept (4 of 6 here, the rest padding); more than `num_frames` is refused.
    kept = processor(videos=[frames], do_sample_frames=False, return_tensors="np")
    assert kept["video_mask"].tolist() == [[1, 1, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="do_sample_frames"):
        processor(videos=[np.concatenate([frames, frames])], do_sample_frames=False)


def test_decoder_kwargs_are_the_geometry_the_frames_are_decoded_with(processor, video):
    kwargs = processor.video_processor.decoder_kwargs(size=24, crop_size=16, resample=2, fps=6.0)
    assert kwargs == {"num_frames": 6, "shortest_edge": 24, "crop_size": (16, 16), "interpolation": "BILINEAR",
                      "sample_fps": 6.0, "num_threads": 1, "max_pixels": 100_000_000}
    frames = read_video(video, **kwargs).frames
    batch = processor(videos=[video], size=24, crop_size=16, resample=2, fps=6.0, do_rescale=False,
                      do_normalize=False, return_tensors="np")
    np.testing.assert_array_equal(batch["pixel_values"][0], frames.transpose(0, 3, 1, 2).astype(np.float32))
