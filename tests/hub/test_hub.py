"""Publishing to the Hub, offline: the upload is captured by mocking `HfApi`, then loaded as a stranger would."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_kwargs
from huggingface_hub import CommitInfo, HfApi, ModelCard
from media import tone, write_test_video
from transformers import CLIPTokenizer

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.cli import main
from modeling_avigate.hub import load_eval_results, push_avigate_to_hub, write_model_card
from modeling_avigate.hub.model_card import METRICS
from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor


REPO_ID = "someone/avigate-tiny"
EVAL_RESULTS = [
    {
        "dataset": "msrvtt", "split": "test_1k_a", "selected_on": "val",
        "text_to_video": {"R@1": 50.2, "R@5": 74.3, "R@10": 83.2, "MdR": 1.0, "MnR": 13.8},
        "video_to_text": {"R@1": 49.0, "R@5": 75.0, "R@10": 84.2, "MdR": 2.0, "MnR": 9.5},
        "test_time_renormalization": None,
    },
    {
        "dataset": "vatex", "split": "test", "selected_on": None,
        "text_to_video": {"R@1": 63.1, "R@5": 90.7, "R@10": 95.5, "MdR": 1.0, "MnR": 3.0},
        "test_time_renormalization": "dual_softmax",
    },
]

TRAIN_ARGS = {"benchmark": "synthetic", "train_split": "train", "selection_split": "validation", "epochs": 1,
              "batch_size": 32, "learning_rate": 1e-3, "clip_lr_multiplier": 1.0, "query_lr_multiplier": 1.0,
              "weight_decay": 0.01, "warmup_proportion": 0.1, "seed": 7, "train_audio_encoder": False,
              "model_name_or_path": None, "clip_name_or_path": None, "ast_name_or_path": None}
# The run the checkpoint fixture comes from: initialised from CLIP and AST.
PRETRAINED_TRAIN_ARGS = {**TRAIN_ARGS, "benchmark": "msrvtt", "epochs": 5, "seed": 11,
                         "clip_name_or_path": "openai/clip-vit-base-patch32",
                         "ast_name_or_path": "MIT/ast-finetuned-audioset-10-10-0.4593"}


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    """A training run's `best/` folder: tiny model, processor files, eval_results.json, train_args.json and unrelated
    extras."""
    from conftest import TEST_WORDS
    from modeling_avigate.vocab import write_word_level_clip_vocab

    root = tmp_path_factory.mktemp("run")
    write_word_level_clip_vocab(TEST_WORDS, str(root / "vocab"))
    tokenizer = CLIPTokenizer.from_pretrained(root / "vocab")
    text_config = {**tiny_config_kwargs()["text_config"], "vocab_size": len(tokenizer),
                   "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    model = AvigateModel(AvigateConfig(**tiny_config_kwargs(text_config=text_config)))
    with torch.no_grad():  # make the gates matter, so audio changes the outputs
        for layer in model.fusion.layers:
            layer.attn_gate.fc2.weight.normal_(std=2.0)
            layer.ffn_gate.fc2.weight.normal_(std=2.0)
    model.save_pretrained(root / "best")
    tokenizer.model_max_length = 8
    processor = AvigateProcessor(
        feature_extractor=AvigateFeatureExtractor(),
        video_processor=AvigateVideoProcessor(size=32, crop_size=32, num_frames=3),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(root / "best")
    (root / "best" / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
    (root / "best" / "train_args.json").write_text(json.dumps(PRETRAINED_TRAIN_ARGS))
    (root / "best" / "optimizer.pt").write_bytes(b"not for the hub")
    return root / "best"


@pytest.fixture(scope="module")
def captured_upload(checkpoint_dir, tmp_path_factory) -> tuple[Path, dict]:
    """Push with `create_repo`, `create_commit` and `ModelCard.validate` mocked; returns the files and the calls."""
    capture, calls = tmp_path_factory.mktemp("hub_repo"), {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        calls["create_commit"] = {"repo_id": repo_id, "commit_message": commit_message, **kwargs}
        for operation in operations:
            target = capture / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(operation.path_or_fileobj, target)
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message=commit_message,
                          commit_description="", oid="0" * 40)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HfApi, "create_repo", create_repo)
        patch.setattr(HfApi, "create_commit", create_commit)
        patch.setattr(ModelCard, "validate", lambda self, *args, **kwargs: calls.setdefault("validate", True))
        commit = push_avigate_to_hub(checkpoint_dir, REPO_ID, private=True, commit_message="first upload")
    assert commit.commit_url.endswith("/commit/0")
    return capture, calls


def test_upload_holds_model_processor_remote_code_and_card(captured_upload):
    capture, calls = captured_upload
    assert calls["create_repo"]["repo_id"] == REPO_ID and calls["create_repo"]["private"] is True
    assert calls["create_commit"]["commit_message"] == "first upload" and calls["validate"]
    files = {path.name for path in capture.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_avigate.py", "modeling_avigate.py",
            "processor_config.json", "processing_avigate.py", "feature_extraction_avigate.py",
            "README.md", "eval_results.json"} <= files
    assert "optimizer.pt" not in files
    config = json.loads((capture / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_avigate.AvigateConfig",
                                  "AutoModel": "modeling_avigate.AvigateModel"}
    assert json.loads((capture / "processor_config.json").read_text())["auto_map"]["AutoProcessor"] == \
        "processing_avigate.AvigateProcessor"


def test_card_metadata_and_model_index_match_the_metrics(captured_upload):
    capture, _ = captured_upload
    card = ModelCard.load(capture / "README.md")
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers" and metadata["license"] == "apache-2.0"
    assert metadata["base_model"] == ["openai/clip-vit-base-patch32", "MIT/ast-finetuned-audioset-10-10-0.4593"]
    assert metadata["datasets"] == ["msrvtt", "vatex"] and "video-text-retrieval" in metadata["tags"]
    assert card.data.model_name == "avigate-tiny"

    parsed = {(result.dataset_type, result.dataset_split, result.task_type, result.metric_name): result
              for result in card.data.eval_results}
    assert len(parsed) == len(card.data.eval_results) == 15  # 2 directions × 5 metrics + 1 direction × 5 metrics
    for record in EVAL_RESULTS:
        for direction, task_type in (("text_to_video", "text-to-video-retrieval"),
                                     ("video_to_text", "video-to-text-retrieval")):
            for metric, value in record.get(direction, {}).items():
                result = parsed[(record["dataset"], record["split"], task_type, metric)]
                assert result.metric_value == value and result.metric_type == METRICS[metric]
                renormalization = record["test_time_renormalization"] or "none"
                assert result.metric_args["test_time_renormalization"] == renormalization
                assert result.metric_args.get("selected_on") == record["selected_on"]
    assert json.loads((capture / "eval_results.json").read_text()) == EVAL_RESULTS
    assert json.loads((capture / "train_args.json").read_text()) == PRETRAINED_TRAIN_ARGS
    text = card.text
    training = text.split("## Training")[1].split("## Limitations")[0]
    assert training.startswith("\n\nThis checkpoint: CLIP towers from `openai/clip-vit-base-patch32`, AST from "
                               "`MIT/ast-finetuned-audioset-10-10-0.4593`")
    assert "Trained on the `msrvtt` benchmark (`train` split) for 5 epochs" in training and "seed 11" in training
    for section in ("## Results", "## Usage", "## Training", "## Limitations", "## Citation"):
        assert section in text
    assert "| MSR-VTT | test_1k_a | val | text-to-video | 50.2 | 74.3 | 83.2 | 1 | 13.8 | none |" in text
    assert "| VATEX | test | not stated | text-to-video | 63.1 | 90.7 | 95.5 | 1 | 3 | dual_softmax |" in text
    assert "random* AST" in text and "Jeong_2025_CVPR" in text


STRANGER = r"""
import importlib.abc, json, sys, torch


class NoPackage(importlib.abc.MetaPathFinder):
    # A stranger has no modeling_avigate package: every import of it fails.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "modeling_avigate":
            raise ImportError(f"modeling_avigate is not installed ({name})")


sys.meta_path.insert(0, NoPackage())
from transformers import AutoModel, AutoProcessor

repo, video, out = sys.argv[1:4]
model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
batch = processor(text=["a dog barks", "a red car"], videos=[video, video], return_tensors="pt")
batch["has_audio"][1] = False
with torch.no_grad():
    outputs = model(**batch, return_loss=True)
result = {"batch": dict(batch), "logits": outputs.logits_per_text, "frames": outputs.frame_embeds,
          "gates": outputs.attn_gates, "loss": outputs.loss}

# The card's usage snippet, pointed at the downloaded repository and the test video.
readme = open(f"{repo}/README.md", encoding="utf-8").read()
snippet = readme.split("## Usage")[1].split("```python")[1].split("```")[0]
snippet = snippet.replace('"someone/avigate-tiny"', repr(repo))
snippet = snippet.replace('"clip1.mp4", "clip2.mp4"', f"{video!r}, {video!r}")
namespace = {}
exec(snippet, namespace)
result["snippet_scores"] = namespace["scores"]
assert not any(name.split(".")[0] == "modeling_avigate" for name in sys.modules), "package was imported"
torch.save(result, out)
"""


def test_stranger_loads_the_upload_with_remote_code(captured_upload, checkpoint_dir, tmp_path):
    capture, _ = captured_upload
    video = write_test_video(str(tmp_path / "clip.mp4"), num_frames=6, fps=6, size=(64, 48),
                             audio=tone(440.0, 1.0, 16000), sample_rate=16000)
    out = tmp_path / "stranger.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "PYTHONPATH": "",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same thread count: bit-identical reductions
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(STRANGER), str(capture), video, str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    stranger = torch.load(out, weights_only=True)

    # Same preprocessing and bit-identical outputs as the package's own classes on the source folder.
    processor = AvigateProcessor.from_pretrained(checkpoint_dir)
    batch = processor(text=["a dog barks", "a red car"], videos=[video, video], return_tensors="pt")
    batch["has_audio"][1] = False
    assert batch.keys() == stranger["batch"].keys()
    for key, value in batch.items():
        torch.testing.assert_close(stranger["batch"][key], value, rtol=0, atol=0, msg=key)
    model = AvigateModel.from_pretrained(checkpoint_dir).eval()
    with torch.no_grad():
        outputs = model(**batch, return_loss=True)
    torch.testing.assert_close(stranger["logits"], outputs.logits_per_text, rtol=0, atol=0)
    torch.testing.assert_close(stranger["frames"], outputs.frame_embeds, rtol=0, atol=0)
    torch.testing.assert_close(stranger["gates"], outputs.attn_gates, rtol=0, atol=0)
    torch.testing.assert_close(stranger["loss"], outputs.loss, rtol=0, atol=0)
    assert stranger["gates"][0].abs().sum() > 0 and stranger["gates"][1].abs().sum() == 0  # audio used, then masked
    assert stranger["snippet_scores"].shape == (1, 2)


def test_stage_only_cli_and_package_loading(checkpoint_dir, tmp_path):
    staged = tmp_path / "staged"
    assert main(["push", str(checkpoint_dir), REPO_ID, "--stage-only", str(staged), "--datasets",
                 "someone/msrvtt-parquet"]) == 0
    assert ModelCard.load(staged / "README.md").data.datasets == ["someone/msrvtt-parquet"]
    # With the package installed the same files load without remote code.
    model = AvigateModel.from_pretrained(staged)
    source = AvigateModel.from_pretrained(checkpoint_dir)
    for (name, value), (_, expected) in zip(model.state_dict().items(), source.state_dict().items()):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    assert isinstance(AvigateProcessor.from_pretrained(staged), AvigateProcessor)


def test_model_only_folder_gets_a_card_without_results(tmp_path):
    AvigateModel(AvigateConfig(**tiny_config_kwargs())).save_pretrained(tmp_path)
    card = ModelCard.load(write_model_card(tmp_path, repo_id="someone/avigate-local"))
    assert card.data.eval_results is None and card.data.to_dict().get("model-index") is None
    assert "No evaluation results" in card.text
    assert "ships no processor files" in card.text and "someone/avigate-local" in card.text


@pytest.mark.parametrize(
    "record, message",
    [
        ({**EVAL_RESULTS[0], "video_to_txt": {}}, "unknown field"),
        ({**EVAL_RESULTS[0], "text_to_video": {"R@1": 50.2}}, "text_to_video"),
        ({**EVAL_RESULTS[0], "split": ""}, "split"),
        ({**EVAL_RESULTS[0], "video_to_text": {**EVAL_RESULTS[0]["video_to_text"], "MnR": "9.5"}}, "video_to_text.MnR"),
        ({"dataset": "msrvtt", "split": "test"}, "at least one of"),
    ],
)
def test_malformed_eval_results_are_rejected(record, message, tmp_path):
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message) as error:
        load_eval_results(path)
    assert str(path) in str(error.value)


def _card_for(tmp_path, checkpoint_dir, training_args: dict | None) -> ModelCard:
    folder = tmp_path / "model"
    shutil.copytree(checkpoint_dir, folder)
    (folder / "train_args.json").unlink()
    if training_args is not None:
        (folder / "train_args.json").write_text(json.dumps(training_args))
    return ModelCard.load(write_model_card(folder))


def test_staged_card_of_a_from_scratch_run_describes_that_run(checkpoint_dir, tmp_path):
    run, staged = tmp_path / "best", tmp_path / "staged"
    shutil.copytree(checkpoint_dir, run)
    (run / "train_args.json").write_text(json.dumps(TRAIN_ARGS))
    results = {"dataset": "synthetic", "split": "test", "selected_on": "validation", "test_time_renormalization": None,
               "text_to_video": {"R@1": 62.5, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0, "MnR": 1.5}}
    (run / "eval_results.json").write_text(json.dumps(results))
    assert main(["push", str(run), REPO_ID, "--stage-only", str(staged)]) == 0
    card = ModelCard.load(staged / "README.md")
    assert card.data.to_dict().get("base_model") is None and card.data.datasets == ["synthetic"]
    assert {result.metric_name: result.metric_value for result in card.data.eval_results} == \
        results["text_to_video"]
    training = card.text.split("## Training")[1].split("## Limitations")[0]
    assert "This checkpoint: every tower trained from scratch (random initialisation)" in training
    assert "Trained on the `synthetic` benchmark (`train` split) for 1 epoch, global batch 32" in training
    assert "seed 7" in training and "not supplied" not in training and "MSR-VTT" not in training


def test_card_of_a_from_scratch_run_describes_that_run(checkpoint_dir, tmp_path):
    card = _card_for(tmp_path, checkpoint_dir, TRAIN_ARGS)
    training = card.text.split("## Training")[1].split("## Limitations")[0]
    assert card.data.to_dict().get("base_model") is None  # nothing pretrained to point at
    assert "every tower trained from scratch" in training
    assert "a randomly initialised AST, frozen during training (no pretrained audio weights were loaded)" \
        in training
    assert "for 1 epoch, global batch 32, 3 frames and 8 tokens per pair, learning rate 0.001" in training
    assert "seed 7" in training and "MSR-VTT" not in training and "5 epochs" not in training
    grouped = _card_for(tmp_path / "grouped", checkpoint_dir, {**TRAIN_ARGS, "hard_negative_groups": ["shape:4"]})
    assert "global batch 32 filled with look-alike groups (`shape:4`), 3 frames" in grouped.text
    model = card.text.split("## Model")[1]
    assert "(1 layers" not in model and "3 frames sampled uniformly per video" in model


def test_card_names_the_pretrained_towers_and_audio_weights(checkpoint_dir, tmp_path):
    arguments = {**TRAIN_ARGS, "clip_name_or_path": "openai/clip-vit-base-patch32",
                 "ast_name_or_path": "MIT/ast-finetuned-audioset-10-10-0.4593"}
    card = _card_for(tmp_path, checkpoint_dir, arguments)
    assert card.data.to_dict()["base_model"] == ["openai/clip-vit-base-patch32",
                                                 "MIT/ast-finetuned-audioset-10-10-0.4593"]
    assert "the pretrained AST `MIT/ast-finetuned-audioset-10-10-0.4593`, frozen during training" in card.text


def test_card_without_training_arguments_says_so(checkpoint_dir, tmp_path):
    card = _card_for(tmp_path, checkpoint_dir, None)
    assert "This checkpoint's training arguments were not supplied. For reference, the paper's" in card.text
    assert card.data.to_dict().get("base_model") is None  # unknown lineage is not guessed
