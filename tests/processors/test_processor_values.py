"""AvigateProcessor's outputs on fixed media equal the values of the processor before it was split into a video
processor, a feature extractor and a tokenizer: every key, every element, bit for bit.

`tests/processors/fixtures/` holds the media (written once with `media.write_test_video`, committed so that a
different encoder build cannot change them) and `expected.npz`, the outputs of the calls below made by the
processor before the split (commit 54115ce, whose decoder mixes stereo in FFmpeg). A change of the decoder's
values changes these files in the same commit."""

import hashlib
import os

import numpy as np
import pytest
from media import tone
from PIL import Image
from transformers import CLIPTokenizer

from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FILES = [os.path.join(FIXTURES, name) for name in ("stereo.mp4", "short.webm", "rotated.mp4")]
TEXTS = ["a dog barks at the car", "", " ".join(["a red car drives left"] * 5)]
# sha256 of each output's bytes for the full-size defaults (12 frames at 224 px, 1024 x 128 fbank, 32 tokens).
FULL_SIZE_DIGESTS = {
    "input_ids": "513eb06bbeb78c441d929125a8fb1348ad148f3cb58606709d41b8eb17442cb9",
    "attention_mask": "f14c5804d6f49fff3778def224b60699d847b1e4564fe0b0a6fcf5ca4123e347",
    "pixel_values": "9e3606243c1a233f2821502e97ade1eb4dc1455f5c127e3b1741df70ac113ebf",
    "video_mask": "99bb8dface617aff037e050e6c51d0f8c4adb7bad06498d69e24f9d58c2adfc5",
    "input_values": "8ae59a1e510268f84b802802dd2c9fc2eca2d0b75f460ffb30713eaa4d8bbaa6",
    "has_audio": "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a",
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from modeling_avigate.testing_utils import TEST_WORDS
    from modeling_avigate.vocab import write_word_level_clip_vocab

    folder = tmp_path_factory.mktemp("tokenizer")
    write_word_level_clip_vocab(TEST_WORDS, str(folder))
    return str(folder)


def small_processor(tokenizer_dir, audio_channel="mix", fps=None, mode="avigate") -> AvigateProcessor:
    """5 frames resized to 20 px and cropped to 16, captions of 12 tokens, a 64 x 16 fbank: small saved arrays."""
    video_processor = AvigateVideoProcessor(size=20, crop_size=16, num_frames=5, fps=fps)
    extractor = AvigateFeatureExtractor(num_mel_bins=16, max_length=64, mode=mode, audio_channel=audio_channel)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=12)
    return AvigateProcessor(extractor, video_processor, tokenizer)


def full_size_processor(tokenizer_dir) -> AvigateProcessor:
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=32)
    return AvigateProcessor(AvigateFeatureExtractor(), AvigateVideoProcessor(), tokenizer)


def outputs_of_every_case(tokenizer_dir) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(9, 61, 97, 3), dtype=np.uint8)
    pil = [Image.fromarray(frame) for frame in rng.integers(0, 256, size=(3, 30, 44, 3), dtype=np.uint8)]
    waveform = np.stack([tone(500.0, 1.0, 22050), tone(1500.0, 1.0, 22050, amplitude=0.1)]).T.copy()
    processor = small_processor(tokenizer_dir)
    return {
        "files": processor(text=TEXTS, videos=FILES, return_tensors="np"),
        "arrays": processor(videos=[frames, pil], audio=[waveform, None], sampling_rate=22050, return_tensors="np"),
        "overrides": processor(
            text=["a dog", "a cat"], videos=[FILES[0], FILES[2]], num_frames=3, fps=4.0, size=24, crop_size=12,
            resample=2, do_normalize=False, rescale_factor=0.5, max_length=6, return_tensors="np",
        ),
        "first_channel_ast": small_processor(tokenizer_dir, audio_channel="first", fps=3.0, mode="ast")(
            videos=FILES[:1], return_tensors="np"
        ),
        "audio_only": processor(audio=[tone(700.0, 0.8, 8000), None], sampling_rate=8000, return_tensors="np"),
    }


def test_outputs_equal_the_values_saved_before_the_split(tokenizer_dir):
    expected = np.load(os.path.join(FIXTURES, "expected.npz"))
    actual = {
        f"{case}/{key}": np.asarray(value)
        for case, batch in outputs_of_every_case(tokenizer_dir).items() for key, value in batch.items()
    }
    assert sorted(actual) == sorted(expected.files)
    for name in expected.files:
        assert actual[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_full_size_outputs_equal_the_digests_saved_before_the_split(tokenizer_dir):
    batch = full_size_processor(tokenizer_dir)(text=TEXTS[:1], videos=FILES[:1], return_tensors="np")
    digests = {key: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() for key, value in batch.items()}
    assert digests == FULL_SIZE_DIGESTS
