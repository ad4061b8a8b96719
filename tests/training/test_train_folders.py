"""What training writes, and only that: feature caches, checkpoints, `best/`, the run record of `output_dir`.

The user's-files table (a cache path or `output_dir` pointing at a folder the package did not write, or at another
run's folder, is refused with one line and every file in it stays byte-identical), checkpoint rotation against
transformers' own `rotate_checkpoints`, `best/` as a function of the trainer state, and kill -9 at each write point
(cache build, checkpoint save, best-model copy) followed by a rerun or resume.
"""

import hashlib
import itertools
import json
import os
import signal

import pytest
import torch
from safetensors.torch import save_file

from builders import FROM_SCRATCH_CONFIG as CONFIG, REPO, TRAIN, run_script
from modeling_avigate.feature_cache import FeatureCache, FeatureCacheWriter
from modeling_avigate.folders import FolderOwnershipError, is_owned, write_marker
from modeling_avigate.training import (
    BEST_MODEL_KIND,
    CHECKPOINT_KIND,
    TrainerState,
    checkpoint_dir,
    checkpoint_epochs,
    checkpoints_to_delete,
    claim_output_dir,
    ensure_best_model,
    latest_checkpoint,
    parse_arguments,
    plan_output_dir,
    rotate_checkpoints,
    weights_checksum,
)


KILL_HARNESS = os.path.join(REPO, "tests", "scripts", "killed_at_write_point.py")


def snapshot(directory) -> dict[str, str]:
    """Every file below `directory` (hidden ones included) with the SHA-256 of its bytes."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, directory)] = hashlib.sha256(handle.read()).hexdigest()
    return files


def users_folder(path) -> dict[str, str]:
    """A folder of the user's own files, one of them hidden and one in a subfolder; returns its snapshot."""
    (path / "notes").mkdir(parents=True)
    (path / "holiday.mp4").write_bytes(b"\x00\x01 not ours")
    (path / ".hidden").write_text("keep me")
    (path / "notes" / "todo.txt").write_text("buy milk")
    return snapshot(path)


# -- argument parsing ---------------------------------------------------------------------------------------------


def test_config_and_command_line_overrides(tmp_path):
    args = parse_arguments([
        "--config", CONFIG, "--epochs", "3", "--model.gate_mode", "closed", "--model.text_config.hidden_size", "32",
        "--processor.num_frames", "4", "--frame_cache", "null", "--cache_only", "true", "--no_freeze_clip_embeddings",
        "--save_total_limit", "2",
    ])
    assert args.epochs == 3 and args.learning_rate == 0.001  # command line over YAML, YAML over defaults
    assert args.model["gate_mode"] == "closed" and args.processor["num_frames"] == 4
    assert args.model["text_config"] == {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                                         "num_attention_heads": 4, "max_position_embeddings": 32}
    assert args.frame_cache is None and args.audio_cache == "outputs/cache/audio-seed42"
    assert args.cache_only is True and args.freeze_clip_embeddings is False and args.save_total_limit == 2

    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 1\nepoch: 2\n")
    with pytest.raises(SystemExit, match=r"bad.yaml: unknown keys \['epoch'\]"):
        parse_arguments(["--config", str(config)])
    with pytest.raises(SystemExit, match="unrecognised argument --modle.gate_mode"):
        parse_arguments(["--config", CONFIG, "--modle.gate_mode", "closed"])
    with pytest.raises(SystemExit, match="save_total_limit must be at least 1"):
        parse_arguments(["--config", CONFIG, "--save_total_limit", "0"])
    with pytest.raises(SystemExit, match="eval_every_epochs must be at least 1"):
        parse_arguments(["--config", CONFIG, "--eval_every_epochs", "0"])
    with pytest.raises(SystemExit, match=r"open_gates_proportion must be in \[0, 1\), got 1.0"):
        parse_arguments(["--config", CONFIG, "--open_gates_proportion", "1"])
    with pytest.raises(SystemExit, match="--audio_cache stores the frozen AST's output"):
        parse_arguments(["--config", CONFIG, "--train_audio_encoder", "true"])


# -- feature caches -----------------------------------------------------------------------------------------------


def test_cache_writer_refuses_a_folder_of_the_users_files_before_writing_anything(tmp_path):
    folder = tmp_path / "frames"
    before = users_folder(folder)
    with pytest.raises(FolderOwnershipError, match=f"refusing to replace {folder}: it is a folder this package"):
        FeatureCacheWriter(str(folder), 2, "x")
    assert snapshot(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["frames"]  # no staging folder was created beside it


def test_cache_holds_only_its_own_files_and_replaces_only_its_own_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    FeatureCache.write(str(folder), [(["a"], {"x": torch.ones(1, 2)})], 1, "one")
    assert sorted(os.listdir(folder)) == [".avigate-folder.json", "cache_index.json", "x.npy"]
    assert is_owned(folder, "feature_cache")
    rebuilt = FeatureCache.write(str(folder), [(["b"], {"y": torch.zeros(1, 3)})], 1, "two")
    assert sorted(os.listdir(folder)) == [".avigate-folder.json", "cache_index.json", "y.npy"]
    assert rebuilt.fingerprint == "two" and sorted(os.listdir(tmp_path)) == ["empty"]


CACHE_BUILDER = """
import sys, torch
from modeling_avigate.feature_cache import FeatureCache
FeatureCache.write(sys.argv[1], [(["a", "b"], {"x": torch.full((2, 3), 2.0)})], 2, "new")
"""


@pytest.mark.parametrize("stage", ["staged", "parked"])
def test_cache_build_killed_leaves_the_previous_cache_loadable(tmp_path, stage):
    directory = tmp_path / "cache"
    FeatureCache.write(str(directory), [(["a"], {"x": torch.ones(1, 3)})], 1, "old")
    builder = tmp_path / "build_cache.py"
    builder.write_text(CACHE_BUILDER)
    killed = run_script(KILL_HARNESS, ["cache", "1", stage, str(builder), str(directory)])
    assert killed.returncode == -signal.SIGKILL, killed.output[-2000:]

    previous = FeatureCache.open(str(directory), "old")  # moves a parked cache back first
    assert previous.get("a")["x"].tolist() == [1.0, 1.0, 1.0]
    rebuilt = FeatureCache.write(str(directory), [(["b"], {"x": torch.zeros(1, 3)})], 1, "new")
    assert rebuilt.get("b")["x"].tolist() == [0.0, 0.0, 0.0]
    assert sorted(os.listdir(tmp_path)) == ["build_cache.py", "cache"]  # the killed build's leftovers are gone


# -- checkpoints and best/ ----------------------------------------------------------------------------------------


def test_rotation_matches_transformers_rotate_checkpoints(tmp_path):
    from transformers.trainer_utils import rotate_checkpoints

    for count, limit in itertools.product(range(1, 6), range(1, 5)):
        for best in range(1, count + 1):
            directory = tmp_path / f"{count}-{limit}-{best}"
            for epoch in range(1, count + 1):
                os.makedirs(checkpoint_dir(str(directory), epoch))
            rotate_checkpoints(str(directory), limit, checkpoint_dir(str(directory), best),
                               checkpoint_prefix="checkpoint-epoch")
            kept = {int(name.rsplit("-", 1)[1]) for name in os.listdir(directory)}
            deleted = checkpoints_to_delete(list(range(1, count + 1)), limit, best)
            assert set(range(1, count + 1)) - set(deleted) == kept, (count, limit, best)
    assert checkpoints_to_delete([1, 2, 3], None, 1) == []


def fake_checkpoint(output_dir, epoch: int, value: float) -> str:
    directory = checkpoint_dir(str(output_dir), epoch)
    os.makedirs(os.path.join(directory, "accelerate_state"))
    save_file({"weight": torch.full((2, 2), value)}, os.path.join(directory, "model.safetensors"))
    (open(os.path.join(directory, "accelerate_state", "optimizer.bin"), "wb")).close()
    write_marker(directory, CHECKPOINT_KIND)
    return directory


def test_rotation_never_removes_an_unmarked_folder_or_the_best_epochs_checkpoint(tmp_path):
    users_copy = tmp_path / "checkpoint-epoch-1"
    before = users_folder(users_copy)
    for epoch in (2, 3, 4):
        fake_checkpoint(tmp_path, epoch, float(epoch))
    assert checkpoint_epochs(str(tmp_path)) == [2, 3, 4] and latest_checkpoint(str(tmp_path)).endswith("-4")
    rotate_checkpoints(str(tmp_path), 1, best_epoch=2)
    assert checkpoint_epochs(str(tmp_path)) == [2, 4]
    assert snapshot(users_copy) == before


def test_trainer_state_selects_on_validation_r1_and_never_a_held_gates_epoch(tmp_path):
    state = TrainerState()
    assert state.record_epoch(0, 2.0, gates_held_open=True) is False  # trained for open gates: never selected
    assert state.record_epoch(1, 1.5, split="validation", t2v={"R@1": 10.0}) is True
    assert state.record_epoch(2, 1.2, split="validation", t2v={"R@1": 10.0}) is False  # a tie keeps the earlier
    assert state.record_epoch(3, 1.0, split="validation", t2v={"R@1": 12.5}) is True
    assert (state.epoch, state.best_epoch, state.best_metric) == (3, 4, 12.5)
    assert state.history[0] == {"epoch": 1, "step": 0, "loss": 2.0, "gates_held_open": True}
    assert state.history[3] == {"epoch": 4, "step": 0, "loss": 1.0, "split": "validation", "t2v_R@1": 12.5}
    state.save(str(tmp_path))
    assert TrainerState.load(str(tmp_path)) == state

    last = TrainerState()  # no selection split: every epoch is the best so far, so the last one is kept
    assert all(last.record_epoch(epoch, 1.0) for epoch in range(3)) and last.best_epoch == 3


def test_best_model_is_rebuilt_from_the_trainer_state_when_missing_or_stale(tmp_path):
    first, second = fake_checkpoint(tmp_path, 1, 1.0), fake_checkpoint(tmp_path, 2, 2.0)
    state = TrainerState(best_epoch=2, best_weights_checksum=weights_checksum(second))
    best = tmp_path / "best"

    ensure_best_model(str(tmp_path), state)  # missing
    assert weights_checksum(best) == state.best_weights_checksum and is_owned(best, BEST_MODEL_KIND)
    assert sorted(os.listdir(best)) == [".avigate-folder.json", "model.safetensors"]  # no optimiser state

    (tmp_path / "metrics.json").write_text("{}")
    ensure_best_model(str(tmp_path), TrainerState(best_epoch=1, best_weights_checksum=weights_checksum(first)))
    assert weights_checksum(best) == weights_checksum(first)
    assert not (tmp_path / "metrics.json").exists()  # it described the weights best/ no longer holds

    (tmp_path / "metrics.json").write_text("{}")
    ensure_best_model(str(tmp_path), TrainerState(best_epoch=1, best_weights_checksum=weights_checksum(first)))
    assert (tmp_path / "metrics.json").exists()  # up to date: nothing rewritten


def test_best_model_refuses_to_replace_a_folder_of_the_users_files(tmp_path):
    second = fake_checkpoint(tmp_path, 2, 2.0)
    before = users_folder(tmp_path / "best")
    state = TrainerState(best_epoch=2, best_weights_checksum=weights_checksum(second))
    with pytest.raises(FolderOwnershipError, match="best"):
        ensure_best_model(str(tmp_path), state)
    assert snapshot(tmp_path / "best") == before


# -- the output folder --------------------------------------------------------------------------------------------


def arguments_for(output_dir, *overrides) -> list[str]:
    return ["--config", CONFIG, "--output_dir", str(output_dir), "--report_to", "null", *overrides]


def test_run_record_decides_what_this_run_is(tmp_path):
    output_dir = tmp_path / "run"
    args = parse_arguments(arguments_for(output_dir))
    assert plan_output_dir(args) is None  # absent: a fresh run
    claim_output_dir(args)
    fake_checkpoint(output_dir, 1, 1.0)
    assert plan_output_dir(args) == checkpoint_dir(str(output_dir), 1)  # this run's: it resumes

    same_run = parse_arguments(arguments_for(output_dir, "--num_workers", "2", "--eval_batch_size", "8",
                                                          "--stop_after_epochs", "1"))
    assert plan_output_dir(same_run) == checkpoint_dir(str(output_dir), 1)
    other_run = parse_arguments(arguments_for(output_dir, "--seed", "7", "--model.gate_mode", "open",
                                                           "--resume_from_checkpoint", "latest"))
    with pytest.raises(FolderOwnershipError, match=r"holds another run \(its train_args.json differs in model, seed\)"):
        plan_output_dir(other_run)

    elsewhere = parse_arguments(arguments_for(tmp_path / "fresh", "--resume_from_checkpoint",
                                                           checkpoint_dir(str(output_dir), 1)))
    assert plan_output_dir(elsewhere) == checkpoint_dir(str(output_dir), 1)
    not_a_checkpoint = parse_arguments(arguments_for(tmp_path / "fresh", "--resume_from_checkpoint",
                                                                  str(output_dir)))
    with pytest.raises(FolderOwnershipError, match="not a checkpoint folder written by examples/train.py"):
        plan_output_dir(not_a_checkpoint)

    overwrite = parse_arguments(arguments_for(output_dir, "--seed", "7", "--overwrite_output_dir", "true"))
    assert plan_output_dir(overwrite) is None
    (output_dir / "my_notes.txt").write_text("mine")
    claim_output_dir(overwrite)
    assert sorted(os.listdir(output_dir)) == [".avigate-folder.json", "my_notes.txt", "train_args.json"]
    assert json.loads((output_dir / "train_args.json").read_text())["seed"] == 7


REFUSED_CASES = ["frame_cache", "audio_cache", "frame_cache holding a cache_index.json", "output_dir",
                 "output_dir with --overwrite_output_dir", "output_dir of another run"]


@pytest.mark.parametrize("case", REFUSED_CASES)
def test_users_files_are_refused_with_one_line_and_left_byte_identical(synthetic_dir, tmp_path, case):
    target = tmp_path / "target"
    output_dir = target if case.startswith("output_dir") else tmp_path / "run"
    if case == "output_dir of another run":
        other = parse_arguments(arguments_for(target, "--learning_rate", "0.5"))
        claim_output_dir(other)
        fake_checkpoint(target, 1, 1.0)
    before = users_folder(target)
    if case == "frame_cache holding a cache_index.json":  # another tool's index, without our fields
        (target / "cache_index.json").write_text('{"entries": []}')
        before = snapshot(target)
    overrides = {"frame_cache": ["--frame_cache", str(target), "--audio_cache", "null"],
                 "audio_cache": ["--audio_cache", str(target), "--frame_cache", "null"],
                 "output_dir with --overwrite_output_dir": ["--overwrite_output_dir", "true"]}
    arguments = arguments_for(output_dir, "--data_dir", str(synthetic_dir), "--batch_size", "2",
                              *overrides.get(case.removesuffix(" holding a cache_index.json"), []))

    result = run_script(TRAIN, arguments)
    assert result.returncode == 1 and "Traceback" not in result.output, result.output[-3000:]
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("train.py: ") and str(target) in message, result.output[-3000:]
    assert snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == ["target"]  # nothing written beside it either


def test_refusal_reaches_the_user_as_one_line_without_a_traceback(tmp_path):
    before = users_folder(tmp_path / "mine")
    arguments = arguments_for(tmp_path / "mine", "--overwrite_output_dir", "true")
    result = run_script(TRAIN, arguments)
    assert result.returncode == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"train.py: --output_dir {tmp_path / 'mine'} is not empty and holds no training run; choose an empty or new "
        "folder"
    )
    assert snapshot(tmp_path / "mine") == before


# -- kill -9 during training, then resume -------------------------------------------------------------------------


def train_arguments(synthetic_dir, output_dir, *overrides) -> list[str]:
    # No selection split and no epoch with held-open gates (which is never selected): every epoch is the best so far,
    # so `best/` is replaced at every epoch.
    caches = os.path.join(os.path.dirname(output_dir), "caches")
    return ["--config", CONFIG, "--data_dir", str(synthetic_dir), "--output_dir", str(output_dir),
            "--audio_cache", os.path.join(caches, "audio"), "--frame_cache", os.path.join(caches, "frames"),
            "--selection_split", "null", "--batch_size", "8", "--epochs", "2", "--eval_every_epochs", "1",
            "--open_gates_proportion", "0", "--report_to", "null", "--eval_batch_size", "16", *overrides]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_script(TRAIN, train_arguments(synthetic_dir, output_dir))
    assert result.returncode == 0, result.output[-4000:]
    return output_dir


@pytest.mark.slow
@pytest.mark.parametrize("folder, stage", [("checkpoint-epoch-2", "staged"), ("best", "staged"), ("best", "parked")])
def test_killed_at_a_write_point_then_resumed_equals_the_uninterrupted_run(synthetic_dir, uninterrupted, tmp_path,
                                                                           folder, stage):
    from modeling_avigate import AvigateModel

    output_dir = tmp_path / "run"
    nth = "1" if folder.startswith("checkpoint") else "2"  # best/ is written at epoch 1, then replaced at epoch 2
    killed = run_script(KILL_HARNESS, [folder, nth, stage, TRAIN, *train_arguments(synthetic_dir, output_dir)])
    assert killed.returncode == -signal.SIGKILL, killed.output[-4000:]

    # The previous state loads: epoch 1's checkpoint, and best/ holding epoch 1's weights (moved back if parked).
    first = checkpoint_dir(str(output_dir), 1)
    AvigateModel.from_pretrained(first)
    expected_latest = checkpoint_dir(str(output_dir), 1 if folder.startswith("checkpoint") else 2)
    assert latest_checkpoint(str(output_dir)) == expected_latest
    from modeling_avigate.folders import recover_interrupted_replace

    recover_interrupted_replace(output_dir / "best")
    assert weights_checksum(output_dir / "best") == weights_checksum(first)
    AvigateModel.from_pretrained(output_dir / "best")
    assert not (output_dir / "metrics.json").exists()

    resumed = run_script(TRAIN, train_arguments(synthetic_dir, output_dir, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.output[-4000:]
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics == json.loads((uninterrupted / "metrics.json").read_text())
    assert metrics["best_epoch"] == 2 and metrics["selected_on"] == "last_epoch"
    assert weights_checksum(output_dir / "best") == metrics["best_weights_checksum"]
    assert weights_checksum(output_dir / "best") == weights_checksum(uninterrupted / "best")
    assert sorted(name for name in os.listdir(output_dir) if name.startswith(".")) == [".avigate-folder.json"]
