"""Stage 1 (`modeling_avigate.pretraining`): towers in transformers' formats that `from_clip_ast_pretrained` loads
offline, a stage-2 run from them, the stage-1 folder's reuse and ownership, and the robustness corruptions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from builders import REPO, TRAIN, run_script
from conftest import folder_snapshot
from modeling_avigate import pretraining
from modeling_avigate.data.synthetic import (
    NOISE_SOUNDS,
    SOUND_EVENTS,
    SPLITS,
    plan_split,
    render_media,
)
from modeling_avigate.folders import FolderOwnershipError
from modeling_avigate.robustness import CORRUPTIONS, corrupt_tracks, mix_at_snr, other_track_partners


CONFIG = os.path.join(REPO, "examples", "configs", "synthetic.yaml")
# Stage-1-sized towers, smaller still: 32 wide with 4 × 32 MLPs (the shape AVIGATE copies CLIP text layers from).
TINY = pretraining.PretrainingSettings(num_clips=24, hidden_size=32, intermediate_size=128, num_attention_heads=2,
                                       projection_dim=32, clip_epochs=2, ast_epochs=1, batch_size=8)


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    directory = tmp_path_factory.mktemp("stage1") / "pretrained"
    record = pretraining.pretrain_towers(str(directory), TINY, num_proc=1)
    return directory, record


def test_visible_captions_name_what_is_on_screen_and_no_sound():
    clips = plan_split(pretraining.PRETRAIN_SPLIT, 60, seed=1)
    for clip in clips:
        for template in range(3):
            caption = pretraining.visible_caption(clip, template)
            assert all(getattr(clip, name) in caption.split() for name in ("color", "shape", "direction", "background"))
            assert ("loudspeaker" in caption) == (clip.kind == "audio_informative")
            assert not any(word in caption for word in ("beep", "hum", "chirp", "click", "noise", "tones"))
    labels = [pretraining.AUDIO_LABELS[pretraining.audio_label(clip)] for clip in clips]
    assert set(labels) == {*SOUND_EVENTS, *NOISE_SOUNDS, "silence"}
    assert all((label == "silence") == (not clip.has_audio) for label, clip in zip(labels, clips))


def test_pretraining_split_shares_no_clip_with_the_benchmark():
    assert pretraining.PRETRAIN_SPLIT in SPLITS
    pretrain = plan_split(pretraining.PRETRAIN_SPLIT, 12, seed=TINY.seed)
    test = plan_split("test", 12, seed=0)
    assert not {clip.video_id for clip in pretrain} & {clip.video_id for clip in test}
    for a, b in zip(pretrain, test):  # even at the same index, the random draws differ
        assert not np.array_equal(render_media(a, pretraining.PRETRAIN_SPLIT, TINY.seed)[0],
                                  render_media(b, "test", 0)[0])


def test_stage_one_folders_load_offline_in_a_fresh_process(stage_one):
    directory, record = stage_one
    assert record["settings"] == pretraining.stage_one_key(TINY)["settings"]
    assert len(record["clip_loss_per_epoch"]) == TINY.clip_epochs and len(record["ast_loss_per_epoch"]) == 1
    script = """
import json, sys, torch
from transformers import ASTFeatureExtractor, ASTForAudioClassification, ASTModel, CLIPModel, CLIPProcessor
from modeling_avigate import AvigateModel
from modeling_avigate.processors import AvigateFeatureExtractor
clip_dir, ast_dir = sys.argv[1:3]
clip, ast = CLIPModel.from_pretrained(clip_dir), ASTModel.from_pretrained(ast_dir)
classifier = ASTForAudioClassification.from_pretrained(ast_dir)
processor = CLIPProcessor.from_pretrained(clip_dir)
extractor = AvigateFeatureExtractor.from_pretrained(ast_dir)
model = AvigateModel.from_clip_ast_pretrained(clip_dir, ast_dir, fusion_num_layers=2, resampler_num_layers=2,
                                              fusion_num_attention_heads=2, max_frames=8)
same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
print(json.dumps({
    "text": same(model.text_model, clip.text_model), "vision": same(model.vision_model, clip.vision_model),
    "projection": same(model.text_projection, clip.text_projection),
    "audio": same(model.audio_model, ast), "classifier_audio": same(classifier.audio_spectrogram_transformer, ast),
    "fusion_from_text": torch.equal(model.fusion.layers[1].mlp.fc1.weight, clip.text_model.encoder.layers[1].mlp.fc1.weight),
    "labels": classifier.config.id2label, "image_size": processor.image_processor.crop_size["height"],
    "caption": processor.tokenizer.decode(processor.tokenizer("a red circle beside a loudspeaker").input_ids,
                                          skip_special_tokens=True),
    "fbank": [extractor.max_length, extractor.num_mel_bins, extractor.mode],
}))
"""
    result = subprocess.run([sys.executable, "-c", script, str(directory / "clip"), str(directory / "ast")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for part in ("text", "vision", "projection", "audio", "classifier_audio", "fusion_from_text"):
        assert loaded[part], part
    assert list(loaded["labels"].values()) == list(pretraining.AUDIO_LABELS)
    assert loaded["image_size"] == TINY.image_size
    assert loaded["caption"] == "a red circle beside a loudspeaker"  # no unknown word
    assert loaded["fbank"] == [1024, 128, "avigate"]


def test_stage_one_is_reused_when_its_settings_match_and_refuses_foreign_folders(stage_one, tmp_path):
    directory, record = stage_one
    weights = (directory / "clip" / "model.safetensors").stat().st_mtime_ns
    assert pretraining.pretrain_towers(str(directory), TINY) == record
    assert (directory / "clip" / "model.safetensors").stat().st_mtime_ns == weights
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    before = folder_snapshot(foreign)
    with pytest.raises(FolderOwnershipError):
        pretraining.pretrain_towers(str(foreign), TINY)
    assert folder_snapshot(foreign) == before


def test_tower_quality_reports_every_attribute_and_label(stage_one, synthetic_dir):
    directory, _ = stage_one
    quality = pretraining.tower_quality(str(directory), str(synthetic_dir))
    assert set(quality["clip_zero_shot"]) == {"color", "shape", "direction", "background", "speaker", "all"}
    assert all(0 <= value <= 100 for value in quality["clip_zero_shot"].values())
    assert quality["clip_zero_shot"]["all"] <= min(quality["clip_zero_shot"][name] for name in ("color", "shape"))
    assert set(quality["ast"]) <= {*pretraining.AUDIO_LABELS, "all"} and "all" in quality["ast"]


def test_clip_video_similarity_is_the_cosine_of_mean_pooled_frames(stage_one):
    from transformers import CLIPModel, CLIPTokenizer

    directory, _ = stage_one
    clip = CLIPModel.from_pretrained(directory / "clip").eval()
    tokenizer = CLIPTokenizer.from_pretrained(directory / "clip")
    pixels = torch.randn(2, 3, 3, TINY.image_size, TINY.image_size)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    similarity = pretraining.clip_video_similarity(clip, tokenizer, ["a red circle", "a blue square"], pixels, mask)
    with torch.no_grad():
        text = clip.get_text_features(**tokenizer(["a red circle"], padding="max_length", max_length=16,
                                                  return_tensors="pt")).pooler_output[0]
        frames = clip.get_image_features(pixel_values=pixels[0, :2]).pooler_output
    frames = frames / frames.norm(dim=-1, keepdim=True)
    video = frames.mean(dim=0)
    expected = torch.dot(text, video) / (text.norm() * video.norm())
    torch.testing.assert_close(similarity[0, 0], expected, rtol=1e-5, atol=1e-5)


def test_stage_two_trains_and_evaluates_from_stage_one(stage_one, synthetic_dir, tmp_path):
    directory, _ = stage_one
    output = tmp_path / "run"
    arguments = ["--config", CONFIG, "--data_dir", str(synthetic_dir), "--output_dir", str(output),
                 "--clip_name_or_path", str(directory / "clip"), "--ast_name_or_path", str(directory / "ast"),
                 "--processor.tokenizer", str(directory / "clip"), "--epochs", "1", "--batch_size", "8",
                 "--eval_every_epochs", "1", "--report_to", "null", "--model.max_frames", "8",
                 "--model.fusion_num_attention_heads", "2", "--audio_cache", str(tmp_path / "audio"),
                 "--frame_cache", str(tmp_path / "frames")]
    result = run_script(TRAIN, arguments)
    assert result.returncode == 0, result.output[-4000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["split"] == "test" and 0 <= metrics["text_to_video"]["R@1"] <= 100
    trained, ast = load_file(output / "best" / "model.safetensors"), load_file(directory / "ast" / "model.safetensors")
    # The AST stays frozen (all but its final LayerNorm): the fine-tuned model holds stage 1's weights.
    name = "audio_spectrogram_transformer.encoder.layer.0.attention.attention.query.weight"
    key = "audio_model.encoder.layer.0.attention.attention.query.weight"
    torch.testing.assert_close(trained[key], ast[name], rtol=0, atol=0)


# -- robustness corruptions ---------------------------------------------------------------------------------------


def _tracks() -> list:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(3200).astype(np.float32), None, rng.standard_normal(3200).astype(np.float32) * 0.1,
            rng.standard_normal(3200).astype(np.float32)]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corruptions_are_deterministic_and_leave_the_clean_tracks_untouched(corruption):
    tracks = _tracks()
    clean = [None if track is None else track.copy() for track in tracks]
    snr = None if corruption == "silence" else 0.0
    first, second = corrupt_tracks(tracks, corruption, snr), corrupt_tracks(tracks, corruption, snr)
    for a, b, before, after in zip(first, second, clean, tracks):
        assert (a is None) == (b is None) == (before is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(after, before)  # the caller's arrays are not modified
            assert not np.array_equal(a, before)
    assert corrupt_tracks(tracks, corruption, snr, seed=1) is not None


def test_mix_at_snr_sets_the_power_ratio():
    rng = np.random.default_rng(1)
    signal, noise = rng.standard_normal(16000), 3 * rng.standard_normal(16000)
    for snr in (10.0, 0.0, -10.0):
        added = mix_at_snr(signal, noise, snr).astype(np.float64) - signal
        assert 10 * np.log10(np.mean(signal**2) / np.mean(added**2)) == pytest.approx(snr, abs=1e-3)
    np.testing.assert_allclose(mix_at_snr(signal, noise, None), noise.astype(np.float32))


def test_other_track_is_a_derangement_and_silence_only_replaces():
    partners = other_track_partners([True, False, True, True, True])
    assert sorted(partners) == sorted(partners.values()) == [0, 2, 3, 4]
    assert all(clip != partner for clip, partner in partners.items())
    tracks = _tracks()
    replaced = corrupt_tracks(tracks, "other_track", None)
    for index, track in enumerate(replaced):
        if track is not None:
            np.testing.assert_array_equal(track, tracks[other_track_partners([t is not None for t in tracks])[index]])
    assert all(track is None or not track.any() for track in corrupt_tracks(tracks, "silence", None))
    with pytest.raises(ValueError, match="silence"):
        corrupt_tracks(tracks, "silence", 0.0)
    with pytest.raises(ValueError, match="corruption"):
        corrupt_tracks(tracks, "thunder", None)
