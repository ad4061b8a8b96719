"""The `avigate` command line: index → search → info on generated clips, one-line errors, sharded build."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from modeling_avigate.cli import main
from modeling_avigate.processors import AvigateProcessor
from modeling_avigate.search import VideoIndex

from builders import tiny_model, tiny_processor_and_model, write_clips


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    processor, model = tiny_processor_and_model(root)
    for name, built in (("model", model), ("other-model", tiny_model(processor, fusion_num_layers=1))):
        built.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    write_clips(str(root / "videos"), 4)
    assert main(["index", str(root / "videos"), "--model", str(root / "model"), "--out", str(root / "gallery"),
                 "--num-workers", "0", "--batch-size", "3"]) == 0
    return root


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_index_search_info_end_to_end(workspace, capsys):
    status, out, _ = run_cli(capsys, "search", workspace / "gallery", "a dog barks at a car", "-k", "3", "--json")
    assert status == 0
    hits = json.loads(out)
    assert len(hits) == 3 and all(os.path.dirname(hit["path"]) == str(workspace / "videos") for hit in hits)
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    # The CLI ranks exactly as the library does with the saved model.
    from modeling_avigate import AvigateModel
    from modeling_avigate.processors import AvigateProcessor

    index = VideoIndex.load(workspace / "gallery", model=AvigateModel.from_pretrained(workspace / "model"),
                            processor=AvigateProcessor.from_pretrained(workspace / "model"))
    expected = index.search("a dog barks at a car", k=3)
    assert [hit["path"] for hit in hits] == [hit.path for hit in expected]
    assert [hit["score"] for hit in hits] == pytest.approx([hit.score for hit in expected], abs=1e-5)

    status, out, _ = run_cli(capsys, "search", workspace / "gallery", "red circle", "-k", "2")
    assert status == 0 and len(out.strip().splitlines()) == 2 and out.split()[0] == "1"

    status, out, _ = run_cli(capsys, "info", workspace / "gallery")
    summary = json.loads(out)
    assert status == 0 and summary["videos"] == summary["segments"] == 4 and summary["frames_per_video"] == 4
    assert summary["model"]["name_or_path"] == str(workspace / "model")
    assert summary["first_stage"] == "none (exact scan)"


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["search", "{root}/missing", "a dog"], "no AVIGATE index at"),
        (["info", "{root}/missing"], "no AVIGATE index at"),
        (["index", "{root}/empty", "--model", "{root}/model", "--out", "{root}/x"], "no video files"),
        (["search", "{root}/gallery", "a dog", "--model", "{root}/other-model"], "config differs"),
        (["search", "{root}/gallery", "a dog", "--model", "{root}/other-model"], "or pass --force"),
        # the benchmark is checked before the model is loaded (the model does not even exist here)
        (["eval", "--benchmark", "synthetic", "--data-dir", "{root}/missing", "--model", "{root}/no-model"],
         "missing"),
    ],
)
def test_errors_exit_non_zero_with_one_line(workspace, capsys, argv, reason):
    (workspace / "empty").mkdir(exist_ok=True)
    status, out, err = run_cli(capsys, *[arg.format(root=workspace) for arg in argv])
    assert status == 1 and out == ""
    # Model loading may draw a progress bar first; the reason is one line, the last one.
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.strip().splitlines()[-1]] and errors[0].startswith(f"avigate {argv[0]}: error:")
    assert reason in errors[0]


def test_forced_other_model_and_help(workspace, capsys):
    status, out, _ = run_cli(capsys, "search", workspace / "gallery", "a dog", "--model", workspace / "other-model",
                             "--force", "-k", "1")
    assert status == 0 and len(out.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--help"])
    assert exit_info.value.code == 0
    assert "accelerate launch" in capsys.readouterr().out


HEAVY_MODULES = ("torch", "transformers", "av", "numpy")


def imported_heavy_modules(argv: list[str]) -> list[str]:
    """The heavy modules a fresh process has imported after running `avigate ARGV`."""
    code = ("import sys\nfrom modeling_avigate.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            f"    pass\nprint(sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["push", "--help"]])
def test_help_imports_neither_torch_nor_transformers(argv):
    assert imported_heavy_modules(argv) == []


def test_info_imports_neither_torch_nor_transformers(workspace):
    assert imported_heavy_modules(["info", str(workspace / "gallery")]) == ["numpy"]  # numpy reads one tensor


def test_search_json_is_valid_json_and_leaves_out_videos_whose_scores_are_not_finite(workspace, capsys, tmp_path):
    index = VideoIndex.load(workspace / "gallery")
    index.frame_embeds[0] = float("nan")  # a NaN score
    index.video_mask[1] = False  # no frame at all: a log-sum-exp over nothing
    index.save(tmp_path / "damaged")
    status, out, _ = run_cli(capsys, "search", tmp_path / "damaged", "red circle", "-k", "4", "--json")
    hits = json.loads(out, parse_constant=lambda constant: pytest.fail(f"{constant} is not JSON"))
    assert status == 0 and sorted(hit["position"] for hit in hits) == list(range(2, len(index)))
    assert all(isinstance(hit["score"], float) for hit in hits)


def _one_error_line(err: str, command: str) -> str:
    """The command's error: one line, the last of stderr (model loading may draw progress bars first)."""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.strip().splitlines()[-1]] and errors[0].startswith(f"avigate {command}: error: "), err
    assert "Traceback" not in err
    return errors[0]


def test_index_json_nested_too_deeply_is_one_line(workspace, capsys, tmp_path):
    import shutil

    shutil.copytree(workspace / "gallery", tmp_path / "gallery")
    (tmp_path / "gallery" / "index.json").write_text("[" * 200_000 + "]" * 200_000)
    status, out, err = run_cli(capsys, "info", tmp_path / "gallery")
    assert status == 1 and out == ""
    assert f"{tmp_path / 'gallery' / 'index.json'} is not valid JSON" in _one_error_line(err, "info")


class _PrintsWhenUnpickled:
    def __reduce__(self):
        return print, ("the pickle ran",)


def test_model_folder_with_pickled_weights_is_refused_in_one_line_without_unsafe_advice(workspace, capsys, tmp_path):
    import shutil

    shutil.copytree(workspace / "model", tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").unlink()
    torch.save({"logit_scale": _PrintsWhenUnpickled()}, tmp_path / "model" / "pytorch_model.bin")
    status, out, err = run_cli(capsys, "search", workspace / "gallery", "a dog", "--model", tmp_path / "model")
    error = _one_error_line(err, "search")
    assert status == 1 and out == "" and "the pickle ran" not in out + err
    assert f"{tmp_path / 'model' / 'pytorch_model.bin'} holds pickled objects besides tensors (it names print)" in error
    assert "nothing in it ran" in error and "weights_only" not in err and "False" not in err


def test_serve_without_gradio_says_how_to_install_it_in_a_clone(workspace, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    monkeypatch.delitem(sys.modules, "modeling_avigate.serve.app", raising=False)
    status, out, err = run_cli(capsys, "serve", workspace / "gallery")
    assert status == 1 and out == ""
    assert ".venv/bin/pip install -e '.[serve]'" in _one_error_line(err, "serve")


def test_search_needs_at_least_one_result(workspace, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(workspace / "gallery"), "a dog", "-k", "0"])
    assert exit_info.value.code == 2 and "must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["push", "convert"])
def test_hub_commands_have_their_own_help_with_dashed_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith(f"usage: avigate {command} [-h]")
    options = re.findall(r"--[a-z][a-z_-]*", out)
    assert options and not [option for option in options if "_" in option]
    assert ("--eval-results" if command == "push" else "--output-dir") in options


@pytest.mark.parametrize("argv", [
    ["eval", "--benchmark", "synthetic", "--data-dir", "d", "--model", "m", "--batch_size", "4"],
    ["push", "model", "user/repo", "--stage_only", "out"],
    ["convert", "--output-dir", "out", "--allow_partial"],
])
def test_underscore_spellings_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    flag = next(arg for arg in argv if arg.startswith("--") and "_" in arg)
    assert "error: unrecognized arguments: " + flag in error


def test_push_without_network_is_one_line_naming_the_repo(workspace, capsys, monkeypatch):
    from huggingface_hub import HfApi

    from modeling_avigate.hub.push import TransportError

    def refuse(*args, **kwargs):
        raise TransportError("[Errno 111] Connection refused")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    status, out, err = run_cli(capsys, "push", workspace / "model", "user/avigate-test", "--no-validate-card")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 1 and out == "" and errors == [err.strip().splitlines()[-1]]
    assert errors[0] == "avigate push: error: could not push to user/avigate-test: [Errno 111] Connection refused"


def test_convert_errors_are_one_line(tmp_path, capsys):
    status, out, err = run_cli(capsys, "convert", "--output-dir", tmp_path / "unused")
    assert status == 1 and out == "" and err.startswith("avigate convert: error:") and err.count("\n") == 1


def test_index_records_an_absolute_model_folder_so_search_works_from_any_directory(workspace, capsys, monkeypatch,
                                                                                  tmp_path):
    monkeypatch.chdir(workspace)
    assert main(["index", "videos", "--model", "model", "--out", str(tmp_path / "relative"), "--num-workers", "0"]) == 0
    capsys.readouterr()
    assert VideoIndex.read_metadata(tmp_path / "relative")["model"]["name_or_path"] == str(workspace / "model")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "search", tmp_path / "relative", "a dog barks at a car", "-k", "2", "--json")
    assert status == 0, err
    assert [hit["path"] for hit in json.loads(out)] == [
        hit["path"] for hit in json.loads(run_cli(capsys, "search", workspace / "gallery", "a dog barks at a car",
                                                  "-k", "2", "--json")[1])]


def test_recorded_model_is_used_only_while_its_fingerprint_matches(workspace, capsys, tmp_path):
    import shutil

    shutil.copytree(workspace / "model", tmp_path / "model")
    assert main(["index", str(workspace / "videos"), "--model", str(tmp_path / "model"), "--out",
                 str(tmp_path / "gallery"), "--num-workers", "0"]) == 0
    # The folder is retrained in place: same config, other weights. The index must not silently use it.
    processor = AvigateProcessor.from_pretrained(workspace / "model")
    tiny_model(processor, seed=1).save_pretrained(tmp_path / "model")
    capsys.readouterr()
    status, out, err = run_cli(capsys, "search", tmp_path / "gallery", "a dog", "-k", "1")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 1 and out == "" and len(errors) == 1
    assert f"the model {tmp_path / 'model'} recorded in the index no longer matches it" in errors[0]
    assert "weights differ" in errors[0] and "--model" in errors[0]
    # --model overrides the recorded reference.
    status, out, _ = run_cli(capsys, "search", tmp_path / "gallery", "a dog", "-k", "1", "--model", workspace / "model")
    assert status == 0 and len(out.splitlines()) == 1


@pytest.mark.parametrize("model", ["{root}/no-such-model", "./no-such-model", "a/b/no-such-model", "no-such-repo"])
def test_wrong_model_path_says_model_folder_not_found(workspace, capsys, model):
    model = model.format(root=workspace)
    status, out, err = run_cli(capsys, "search", workspace / "gallery", "a dog", "--model", model)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == 1 and out == "" and errors == [err.strip().splitlines()[-1]]
    assert errors[0].startswith(f"avigate search: error: model folder not found: {model}")


def test_marked_shards_left_by_a_killed_build_are_removed_by_the_next_build(workspace, capsys, tmp_path):
    from modeling_avigate.folders import write_marker

    leftover = tmp_path / "gallery.shards"
    (leftover / "shard-00000").mkdir(parents=True)
    write_marker(leftover, "index_shards")
    assert main(["index", str(workspace / "videos"), "--model", str(workspace / "model"), "--out",
                 str(tmp_path / "gallery"), "--num-workers", "0"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["gallery"]


@pytest.mark.slow
def test_two_process_sharded_update_equals_single_process_build(workspace, tmp_path):
    # torchrun with the gloo backend: two CPU processes update an index of two of the four files; each embeds one of
    # the two others, the main one merges them into the kept entries.
    # --standalone rendezvous on a free port, so a busy fixed port cannot fail the test.
    partial = VideoIndex.load(workspace / "gallery")
    partial.remove(partial.files[2:])
    partial.frame_embeds = partial.frame_embeds.flip(1)  # marks the kept entries: re-embedding would undo it
    partial.save(tmp_path / "sharded")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "modeling_avigate.cli", "index", str(workspace / "videos"), "--model", str(workspace / "model"),
               "--out", str(tmp_path / "sharded"), "--num-workers", "0", "--batch-size", "3"]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    # One process merged and saved: two processes that each built the whole index would both report it.
    assert completed.stdout.count("indexed 4 videos") == 1, completed.stdout
    assert not os.path.exists(tmp_path / "sharded.shards")
    sharded, single = VideoIndex.load(tmp_path / "sharded"), VideoIndex.load(workspace / "gallery")
    assert sharded.entries == single.entries
    assert torch.equal(sharded.frame_embeds[:2], partial.frame_embeds)  # kept as they were
    torch.testing.assert_close(sharded.frame_embeds[2:].float(), single.frame_embeds[2:].float(), atol=1e-3, rtol=0)
    assert torch.equal(sharded.video_mask, single.video_mask) and torch.equal(sharded.has_audio, single.has_audio)
    assert sharded.info == single.info
