"""examples/train.py end to end on a tiny synthetic benchmark: checkpoints, exact resume, NaN stop, caches."""

import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from builders import FROM_SCRATCH_CONFIG, run_train
from conftest import tiny_config_kwargs, tiny_token_ids


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(directory, "model.safetensors"))


@pytest.mark.slow
def test_interrupted_and_resumed_run_reaches_the_same_weights(synthetic_dir, tmp_path):
    run_train(synthetic_dir, tmp_path / "straight", "--save_total_limit", "2")  # keep epoch 1 to compare with
    run_train(synthetic_dir, tmp_path / "resumed", "--stop_after_epochs", "1")
    assert not (tmp_path / "resumed" / "checkpoint-epoch-2").exists()
    run_train(synthetic_dir, tmp_path / "resumed", "--resume_from_checkpoint", "latest")

    straight = weights(tmp_path / "straight" / "checkpoint-epoch-2")
    resumed = weights(tmp_path / "resumed" / "checkpoint-epoch-2")
    initial_epoch = weights(tmp_path / "straight" / "checkpoint-epoch-1")
    assert any(not torch.equal(straight[k], initial_epoch[k]) for k in straight), "epoch 2 must change the weights"
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=f"{name} differs after resume")

    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["selected_on"] == "validation"
    assert set(metrics["text_to_video"]) == {"R@1", "R@5", "R@10", "MdR", "MnR"}
    state = json.loads((tmp_path / "straight" / "best" / "trainer_state.json").read_text())
    assert metrics["best_epoch"] == state["best_epoch"]

    from modeling_avigate import AvigateModel, AvigateProcessor

    model = AvigateModel.from_pretrained(tmp_path / "straight" / "best")
    processor = AvigateProcessor.from_pretrained(tmp_path / "straight" / "best")
    # The recipe's own values (the synthetic recipe reads 4 frames since issue 15).
    with open(FROM_SCRATCH_CONFIG) as handle:
        recipe = yaml.safe_load(handle)
    assert processor.video_processor.num_frames == recipe["processor"]["num_frames"]
    assert model.config.projection_dim == recipe["model"]["projection_dim"]


@pytest.mark.slow
def test_eval_every_epochs_checkpoints_every_n_and_the_stop_point_and_resumes_exactly(synthetic_dir, tmp_path):
    common = ("--epochs", "3", "--eval_every_epochs", "2", "--save_total_limit", "5")
    run_train(synthetic_dir, tmp_path / "straight", *common)
    assert sorted(p.name for p in (tmp_path / "straight").glob("checkpoint-epoch-*")) == [
        "checkpoint-epoch-2", "checkpoint-epoch-3"]  # every 2nd epoch and the last
    state = json.loads((tmp_path / "straight" / "checkpoint-epoch-3" / "trainer_state.json").read_text())
    assert [record["epoch"] for record in state["history"]] == [2, 3]

    run_train(synthetic_dir, tmp_path / "resumed", *common, "--stop_after_epochs", "1")
    assert sorted(p.name for p in (tmp_path / "resumed").glob("checkpoint-epoch-*")) == ["checkpoint-epoch-1"]
    run_train(synthetic_dir, tmp_path / "resumed", *common, "--resume_from_checkpoint", "latest")
    straight = weights(tmp_path / "straight" / "checkpoint-epoch-3")
    resumed = weights(tmp_path / "resumed" / "checkpoint-epoch-3")
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=f"{name} differs after resume")


@pytest.mark.slow
def test_open_gates_proportion_trains_ungated_first_and_are_never_selected(synthetic_dir, tmp_path):
    run_train(synthetic_dir, tmp_path / "run", "--epochs", "3", "--open_gates_proportion", "0.6", "--gate_mode",
              "learned", "--save_total_limit", "5", "--eval_every_epochs", "1")  # round(0.6 * 3) = 2 epochs held
    state = json.loads((tmp_path / "run" / "checkpoint-epoch-3" / "trainer_state.json").read_text())
    assert [record.get("gates_held_open", False) for record in state["history"]] == [True, True, False]
    assert "t2v_R@1" not in state["history"][0] and "t2v_R@1" in state["history"][2]
    assert state["best_epoch"] == 3
    # held gates are not in the forward pass, so their weights move only once the learned gates take over
    epochs = [weights(tmp_path / "run" / f"checkpoint-epoch-{epoch}") for epoch in (1, 2, 3)]
    gate = "fusion.layers.0.attn_gate.fc1.weight"
    assert torch.equal(epochs[0][gate], epochs[1][gate]) and not torch.equal(epochs[1][gate], epochs[2][gate])
    assert not torch.equal(epochs[0]["fusion.layers.0.cross_attn.q_proj.weight"],
                           epochs[1]["fusion.layers.0.cross_attn.q_proj.weight"])  # the audio branch trains


@pytest.mark.slow
def test_held_gates_leave_a_selectable_epoch_when_max_train_steps_ends_the_run_early(synthetic_dir, tmp_path):
    run_train(synthetic_dir, tmp_path / "run", "--epochs", "3", "--open_gates_proportion", "0.6", "--gate_mode",
              "learned", "--max_train_steps", "2")  # ends inside epoch 1: the only epoch, so it is not held
    state = json.loads((tmp_path / "run" / "checkpoint-epoch-1" / "trainer_state.json").read_text())
    assert state["best_epoch"] == 1 and "gates_held_open" not in state["history"][0]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] == 1


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(synthetic_dir, tmp_path):
    import numpy as np

    run_train(synthetic_dir, tmp_path / "run", "--stop_after_epochs", "1")
    before = weights(tmp_path / "run" / "checkpoint-epoch-1")
    # Poison the cached frames: the next forward pass produces a NaN loss, as corrupt data would.
    frames = np.load(tmp_path / "caches" / "frames" / "pixel_values.npy", mmap_mode="r+")
    frames[:] = np.nan
    frames.flush()
    result = run_train(synthetic_dir, tmp_path / "run", "--resume_from_checkpoint", "latest", check=False)
    assert result.returncode != 0
    assert "NonFiniteLossError" in result.output and "checkpoint-epoch-1" in result.output
    after = weights(tmp_path / "run" / "checkpoint-epoch-1")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "run" / "checkpoint-epoch-2").exists()


def test_audio_cache_step_matches_the_uncached_step_within_fp16(tmp_path):
    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.feature_cache import FeatureCache
    torch.manual_seed(0)
    model = AvigateModel(AvigateConfig(**tiny_config_kwargs()))
    input_ids = torch.randint(10, 400, (3, 6))
    ids = tiny_token_ids()
    input_ids[:, 0], input_ids[:, -1] = ids["bos_token_id"], ids["eos_token_id"]
    batch = dict(input_ids=input_ids, pixel_values=torch.randn(3, 2, 3, 32, 32), has_audio=torch.tensor([1, 0, 1]))
    input_values = torch.randn(3, 1024, 128)
    with torch.no_grad():
        hidden = model.get_audio_hidden_states(input_values)
    cache = FeatureCache.write(str(tmp_path / "audio"), [(["a", "b", "c"], {"audio_hidden_states": hidden})], 3, "x")
    cached = torch.stack([cache.get(video_id)["audio_hidden_states"] for video_id in "abc"])
    assert cached.dtype == torch.float16

    def loss_and_grads(**audio):
        model.zero_grad()
        loss = model(**batch, **audio, return_loss=True).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_raw, grads_raw = loss_and_grads(input_values=input_values)
    loss_cached, grads_cached = loss_and_grads(audio_hidden_states=cached)
    torch.testing.assert_close(loss_cached, loss_raw, rtol=1e-3, atol=1e-3)
    for name, grad in grads_raw.items():
        if name.startswith("audio_model.") and not name.startswith("audio_model.layernorm."):
            assert name not in grads_cached  # the cached path never runs the frozen encoder
            continue
        torch.testing.assert_close(grads_cached[name], grad, rtol=2e-2, atol=2e-3, msg=name)


def test_unusable_training_video_is_replaced_and_counted_and_other_errors_surface(tmp_path):
    from modeling_avigate.pipeline import TrainingPairs
    from modeling_avigate.processors import MediaError

    class FakeProcessor:
        def process_video(self, path):
            if path.endswith("bad.mp4"):
                raise MediaError(path, "the file has no video stream")
            if path.endswith("bug.mp4"):
                raise TypeError("a bug, not a bad file")
            return {"pixel_values": np.zeros((2, 3, 4, 4), np.float32), "video_mask": np.ones(2, np.int64),
                    "input_values": np.zeros((8, 4), np.float32), "has_audio": np.bool_(True)}

    pairs = {"caption": ["one", "two", "three", "four"], "video_id": ["a", "bad", "c", "bug"],
             "video": ["a.mp4", "bad.mp4", "c.mp4", "bug.mp4"]}
    dataset = TrainingPairs(pairs, FakeProcessor())
    item = dataset[1]
    assert item["text"] == "three" and item["position"] == 2
    assert dataset.skipped == {"bad.mp4": "the file has no video stream"}
    with pytest.raises(MediaError, match="bad.mp4: the file has no video stream"):
        TrainingPairs(pairs, FakeProcessor(), strict=True)[1]
    with pytest.raises(TypeError, match="a bug"):
        dataset[3]


@pytest.mark.slow
def test_published_test_numbers_are_what_avigate_eval_gives(synthetic_dir, tmp_path, capsys):
    """The run's final test evaluation decodes the videos like `avigate eval` does, rather than reading the fp16
    feature caches: with the test rows of the frame cache zeroed, the run's numbers still equal `avigate eval`'s."""
    from modeling_avigate.cli import main
    from modeling_avigate.data import load_benchmark

    run_train(synthetic_dir, tmp_path / "run", "--cache_only", "true")
    frames = tmp_path / "caches" / "frames"
    rows = json.loads((frames / "cache_index.json").read_text())["rows"]
    pixel_values = np.load(frames / "pixel_values.npy", mmap_mode="r+")
    for video_id in load_benchmark("synthetic", str(synthetic_dir), "test", view="videos")["video_id"]:
        pixel_values[rows[video_id]] = 0
    pixel_values.flush()
    run_train(synthetic_dir, tmp_path / "run")
    published = json.loads((tmp_path / "run" / "best" / "eval_results.json").read_text())
    capsys.readouterr()
    assert main(["eval", "--benchmark", "synthetic", "--data-dir", str(synthetic_dir), "--split", "test", "--model",
                 str(tmp_path / "run" / "best"), "--num-workers", "0", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for direction in ("text_to_video", "video_to_text"):
        assert published[direction] == evaluated[direction], direction
