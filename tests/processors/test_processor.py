"""AvigateProcessor: batches from files, arrays and PIL images; text; bad input; save/load; remote code."""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from conftest import tiny_config_kwargs
from media import tone, write_test_video
from PIL import Image
from transformers import AutoProcessor, CLIPTokenizer
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from modeling_avigate.configuration_avigate import AvigateConfig
from modeling_avigate.processors import (
    AvigateFeatureExtractor,
    AvigateProcessor,
    AvigateVideoProcessor,
    MediaError,
    read_video,
)


SIZE = tiny_config_kwargs()["vision_config"]["image_size"]  # 32


def make_processor(tokenizer_dir, max_length: int = 32, **video_settings) -> AvigateProcessor:
    video_processor = AvigateVideoProcessor(size=SIZE, crop_size=SIZE, **{"num_frames": 6, **video_settings})
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=max_length)
    return AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)


@pytest.fixture
def processor(tiny_tokenizer_dir) -> AvigateProcessor:
    return make_processor(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "sound": write_test_video(str(folder / "sound.mp4"), num_frames=20, fps=10, size=(97, 61),
                                  audio=tone(440.0, 2.0, 44100, channels=2), sample_rate=44100),
        "short": write_test_video(str(folder / "short.webm"), num_frames=4, fps=10, codec="libvpx-vp9"),
        "mute": write_test_video(str(folder / "mute.mp4"), num_frames=10, fps=10, codec="mpeg4"),
    }


def normalise(frames: np.ndarray) -> np.ndarray:
    """uint8 `[n, H, W, 3]` → CLIP-normalised `[n, 3, H, W]`, written out independently of the processor."""
    pixels = (frames / 255.0 - np.asarray(OPENAI_CLIP_MEAN)) / np.asarray(OPENAI_CLIP_STD)
    return pixels.transpose(0, 3, 1, 2)


def test_batch_of_files_with_mixed_lengths(processor, media):
    batch = processor(
        text=["a dog barks", "a cat"], videos=[media["sound"], media["short"], media["mute"]], return_tensors="pt"
    )
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 32)
    assert batch["pixel_values"].shape == (3, 6, 3, SIZE, SIZE) and batch["pixel_values"].dtype == torch.float32
    assert batch["video_mask"].tolist() == [[1] * 6, [1] * 4 + [0] * 2, [1] * 6]
    assert torch.all(batch["pixel_values"][1, 4:] == 0)
    assert batch["input_values"].shape == (3, 1024, 128) and batch["input_values"].dtype == torch.float32
    assert batch["has_audio"].tolist() == [True, False, False] and batch["has_audio"].dtype == torch.bool
    assert torch.all(batch["input_values"][1:] == 0)
    # Frames are the decoder's, normalised with CLIP's mean and std.
    clip = read_video(media["sound"], 6, SIZE, (SIZE, SIZE))
    np.testing.assert_allclose(batch["pixel_values"][0].numpy(), normalise(clip.frames), atol=1e-5)
    # The sound track goes through the feature extractor (channel mean of the 44.1 kHz stereo track, at 16 kHz).
    expected = processor.feature_extractor(clip.audio, sampling_rate=16000)["input_values"][0]
    np.testing.assert_allclose(batch["input_values"][0].numpy(), expected, atol=1e-5)


def test_arrays_and_pil_lists_give_the_same_frames(processor):
    frames = np.random.default_rng(0).integers(0, 256, size=(9, 61, 97, 3), dtype=np.uint8)
    from_array = processor(videos=[frames], return_tensors="np")
    from_pil = processor(videos=[[Image.fromarray(frame) for frame in frames]], return_tensors="np")
    np.testing.assert_array_equal(from_array["pixel_values"], from_pil["pixel_values"])
    assert from_array["video_mask"].tolist() == [[1] * 6] and from_array["has_audio"].tolist() == [False]
    # 9 frames sampled to 6 by the linspace rule: 0, 1, 3, 4, 6, 8.
    single = processor(videos=frames[[4]], return_tensors="np")["pixel_values"][0, 0]
    np.testing.assert_array_equal(from_array["pixel_values"][0, 3], single)


def test_caller_waveforms_replace_the_sound_track(processor, media):
    stereo = tone(440.0, 1.0, 44100, channels=2)
    channels_first = processor(videos=[media["mute"]], audio=[stereo], sampling_rate=44100, return_tensors="np")
    channels_last = processor(videos=[media["mute"]], audio=[stereo.T], sampling_rate=44100, return_tensors="np")
    assert channels_first["has_audio"].tolist() == [True]
    np.testing.assert_allclose(channels_first["input_values"], channels_last["input_values"], atol=1e-6)
    for rate in (8000, 48000):
        waveform = tone(440.0, 1.0, rate)
        batch = processor(audio=[waveform, None], sampling_rate=rate, return_tensors="np")
        assert batch["has_audio"].tolist() == [True, False] and set(batch) == {"input_values", "has_audio"}
        assert np.all(batch["input_values"][1] == 0)
    # A None item means "no sound", not "read the file's track".
    assert processor(videos=[media["sound"]], audio=[None], sampling_rate=16000)["has_audio"].tolist() == [False]


def test_silent_sound_track_counts_as_audio(processor, tmp_path):
    path = write_test_video(str(tmp_path / "silent.mp4"), num_frames=4, fps=4, audio=np.zeros(16000, np.float32))
    batch = processor(videos=path, return_tensors="np")
    assert batch["has_audio"].tolist() == [True] and np.all(np.isfinite(batch["input_values"]))


def test_text_truncation_keeps_eos_and_odd_text_is_handled(processor, tiny_tokenizer_dir):
    tokenizer = processor.tokenizer
    long_text = " ".join(["a dog barks at the car"] * 20)
    batch = processor(text=[long_text, "", "café 日本語 🐶 naïve"], return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (3, 32)
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, -1] == tokenizer.eos_token_id and mask[0].all()
    assert ids[1, :2].tolist() == [tokenizer.bos_token_id, tokenizer.eos_token_id] and mask[1].sum() == 2
    eos_position = int(mask[2].sum()) - 1
    assert 2 < eos_position < 31 and ids[2, eos_position] == tokenizer.eos_token_id
    charades = make_processor(tiny_tokenizer_dir, max_length=64)(text=long_text)["input_ids"][0]
    assert len(charades) == 64 and charades[-1] == tokenizer.eos_token_id


def test_missing_file_raises_the_media_error_naming_it(processor, tmp_path):
    missing = str(tmp_path / "nowhere.mp4")
    with pytest.raises(MediaError, match="nowhere.mp4: file not found"):
        processor(videos=[missing])


def test_broken_files_raise_errors_naming_file_and_reason(processor, media, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    data = open(media["sound"], "rb").read()
    truncated_mp4 = tmp_path / "cut.mp4"  # the index (moov) is written last, so a cut file has none
    truncated_mp4.write_bytes(data[: len(data) // 2])
    webm = write_test_video(str(tmp_path / "long.webm"), num_frames=40, fps=10, codec="libvpx-vp9")
    truncated_webm = tmp_path / "cut.webm"
    truncated_webm.write_bytes(open(webm, "rb").read()[: os.path.getsize(webm) // 2])
    audio_only = tmp_path / "audio_only.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(440.0, 0.064, 16000).reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame) + stream.encode(None):
            container.mux(packet)
    cases = [(garbage, "corrupt"), (truncated_mp4, "corrupt"), (truncated_webm, "truncated"), (audio_only, "no video")]
    for path, reason in cases:
        with pytest.raises(MediaError, match=rf"{path.name}.*{reason}"):
            processor(videos=[str(path)])


def test_malformed_arguments_raise_value_errors_naming_them(processor, media):
    waveform = tone(440.0, 0.5, 16000)
    for bad_rate in ("16000", 16000.0, None, True, -1):
        with pytest.raises(ValueError, match="sampling_rate"):
            processor(videos=[media["mute"]], audio=[waveform], sampling_rate=bad_rate)
    with pytest.raises(ValueError, match="`audio` has 2 items but `videos` has 1"):
        processor(videos=[media["mute"]], audio=[waveform, waveform], sampling_rate=16000)
    with pytest.raises(ValueError, match="videos"):
        processor(videos=[np.zeros((4, 8, 8), np.uint8)])
    with pytest.raises(ValueError, match="videos"):
        processor(videos=[42])
    with pytest.raises(ValueError, match="text"):
        processor(text=[["a", "dog"]])
    with pytest.raises(ValueError, match="text"):
        processor()
    with pytest.raises(TypeError, match="not `images`"):
        processor(images=[np.zeros((8, 8, 3), np.uint8)])


def test_save_and_load_round_trip(tiny_tokenizer_dir, media, tmp_path):
    custom = make_processor(tiny_tokenizer_dir, num_frames=4, max_length=16, fps=1.0)
    custom.feature_extractor = AvigateFeatureExtractor(mode="ast", audio_channel="first")
    custom.save_pretrained(tmp_path)
    loaded = AvigateProcessor.from_pretrained(tmp_path)
    video_processor, extractor = loaded.video_processor, loaded.feature_extractor
    settings = (video_processor.num_frames, loaded.tokenizer.model_max_length, video_processor.fps, extractor.mode,
                extractor.audio_channel)
    assert settings == (4, 16, 1.0, "ast", "first")
    assert video_processor.crop_size == {"height": SIZE, "width": SIZE}
    before = custom(text=["a dog barks"], videos=[media["sound"]], return_tensors="np")
    after = loaded(text=["a dog barks"], videos=[media["sound"]], return_tensors="np")
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_auto_processor_uses_the_registered_class_for_model_type_avigate(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    AvigateConfig(**tiny_config_kwargs()).save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is AvigateProcessor
    assert type(AutoVideoProcessor.from_pretrained(tmp_path)) is AvigateVideoProcessor


def test_video_processor_saves_its_own_config_file(processor, tmp_path):
    processor.video_processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "video_preprocessor_config.json").read_text())["num_frames"] == 6
    loaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is AvigateVideoProcessor and loaded.to_dict() == processor.video_processor.to_dict()


def test_processor_saved_before_the_video_processor_fails_with_one_line(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    old = {"image_processor": {"size": {"shortest_edge": SIZE}}, "feature_extractor": config["feature_extractor"],
           "num_frames": 6, "max_length": 32, "processor_class": "AvigateProcessor"}
    (tmp_path / "processor_config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="saved before AvigateVideoProcessor existed") as error:
        AvigateProcessor.from_pretrained(tmp_path)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_saved_folder_loads_as_remote_code_in_a_fresh_process(processor, tmp_path):
    processor.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_avigate.AvigateProcessor"
    sources = {"processing_avigate.py", "feature_extraction_avigate.py", "video_processing_avigate.py", "video_io.py",
               "decoding_types.py", "frame_geometry.py", "frame_selection.py", "audio_decoding.py"}
    assert sources <= set(os.listdir(tmp_path / "saved"))
    script = (
        "import sys, numpy as np\n"
        "from transformers import AutoProcessor\n"
        "processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "from transformers.models.auto.video_processing_auto import AutoVideoProcessor\n"
        "batch = processor(text=['a dog'], videos=[np.zeros((3, 40, 50, 3), np.uint8)], return_tensors='np')\n"
        "video_processor = AutoVideoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "print(type(processor).__name__, batch['pixel_values'].shape, batch['video_mask'].tolist(),\n"
        "      type(video_processor).__name__, 'modeling_avigate' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "saved")], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == (
        f"AvigateProcessor (1, 6, 3, {SIZE}, {SIZE}) [[1, 1, 1, 0, 0, 0]] AvigateVideoProcessor False"
    )
