# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Model cards for AVIGATE checkpoints: Hub metadata, a `model-index` from evaluation results, usage, recipe, limits.

Evaluation results come from the training run as JSON, one record (or a list of records) of this form
(`docs/hub.md` documents it; R@K in percent, ranks 1-based):

```json
{
  "dataset": "msrvtt",
  "split": "test_1k_a",
  "selected_on": "val",
  "text_to_video": {"R@1": 50.2, "R@5": 74.3, "R@10": 83.2, "MdR": 1.0, "MnR": 13.8},
  "video_to_text": {"R@1": 49.0, "R@5": 75.0, "R@10": 84.2, "MdR": 2.0, "MnR": 9.5},
  "test_time_renormalization": null
}
```
"""

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from modeling_avigate import AvigateConfig


EVAL_RESULTS_FILE = "eval_results.json"
TRAIN_ARGS_FILE = "train_args.json"
PROCESSOR_FILE = "processor_config.json"
TOKENIZER_FILE = "tokenizer_config.json"
TAGS = ["video-text-retrieval", "text-to-video-retrieval", "audio-visual", "clip", "audio-spectrogram-transformer",
        "avigate", "custom_code"]
PAPER_URL = "https://arxiv.org/abs/2504.02397"
REFERENCE_CODE_URL = "https://github.com/BoseungJeong/AVIGATE-CVPR2025"

# JSON direction key → (model-index task type, task name).
DIRECTIONS = {
    "text_to_video": ("text-to-video-retrieval", "Text-to-video retrieval"),
    "video_to_text": ("video-to-text-retrieval", "Video-to-text retrieval"),
}
# JSON metric key → model-index metric type.
METRICS = {"R@1": "recall@1", "R@5": "recall@5", "R@10": "recall@10", "MdR": "median_rank", "MnR": "mean_rank"}
RECORD_KEYS = {"dataset", "split", "selected_on", "test_time_renormalization", *DIRECTIONS}
DATASET_NAMES = {"msrvtt": "MSR-VTT", "vatex": "VATEX", "charades": "Charades", "synthetic": "Synthetic"}

CITATION = """@InProceedings{Jeong_2025_CVPR,
    author    = {Jeong, Boseung and Park, Jicheol and Kim, Sungyeon and Kwak, Suha},
    title     = {Learning Audio-guided Video Representation with Gated Attention for Video-Text Retrieval},
    booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
    month     = {June},
    year      = {2025},
    pages     = {26202-26211}
}"""


# ---------------------------------------------------------------------------------------------------------------
# Evaluation results
# ---------------------------------------------------------------------------------------------------------------


def _check_record(record: Any, origin: str) -> dict:
    """Validate one evaluation record; errors name `origin` (the file or argument) and the offending field."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{origin}: an evaluation record must be a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        raise ValueError(f"{origin}: unknown field(s) {unknown}; expected {sorted(RECORD_KEYS)}")
    for name in ("dataset", "split"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise ValueError(f"{origin}: field {name!r} must be a non-empty string")
    for name in ("selected_on", "test_time_renormalization"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise ValueError(f"{origin}: field {name!r} must be a string or null")
    directions = [direction for direction in DIRECTIONS if direction in record]
    if not directions:
        raise ValueError(f"{origin}: needs at least one of {sorted(DIRECTIONS)}")
    for direction in directions:
        values = record[direction]
        if not isinstance(values, Mapping) or set(values) != set(METRICS):
            got = sorted(values) if isinstance(values, Mapping) else type(values).__name__
            raise ValueError(f"{origin}: {direction!r} must hold exactly {sorted(METRICS)}, got {got}")
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{origin}: {direction}.{metric} must be a finite number, got {value!r}")
    return dict(record)


def find_eval_results(folder: str | Path) -> Path | None:
    """`folder/eval_results.json` if the training run wrote one there, else `None`."""
    path = Path(folder) / EVAL_RESULTS_FILE
    return path if path.is_file() else None


def load_eval_results(
    eval_results: str | Path | Mapping | Sequence[Mapping] | None,
) -> list[dict]:
    """
    Read and validate evaluation records (see the module docstring for the format).

    Args:
        eval_results: a JSON file path, one record, a list of records, or `None` (no results).

    Returns:
        The records as a list of dicts.
    """
    if eval_results is None:
        return []
    origin = "eval_results"
    if isinstance(eval_results, (str, Path)):
        origin = str(eval_results)
        try:
            eval_results = json.loads(Path(eval_results).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read evaluation results from {origin}: {error}") from error
    records = [eval_results] if isinstance(eval_results, Mapping) else list(eval_results)
    return [_check_record(record, f"{origin}[{index}]") for index, record in enumerate(records)]


def eval_results_to_model_index(records: Sequence[Mapping]) -> list[EvalResult]:
    """One `EvalResult` per (record, direction, metric). The selection split and any test-time re-normalisation are
    kept in the metric's `args`, so a reader of the model-index sees how each number was obtained."""
    results = []
    for record in records:
        args = {"test_time_renormalization": record.get("test_time_renormalization") or "none"}
        if record.get("selected_on"):
            args["selected_on"] = record["selected_on"]
        for direction, (task_type, task_name) in DIRECTIONS.items():
            for metric, value in record.get(direction, {}).items():
                results.append(EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=record["dataset"],
                    dataset_name=DATASET_NAMES.get(record["dataset"], record["dataset"]),
                    dataset_split=record["split"],
                    metric_type=METRICS[metric],
                    metric_name=metric,
                    metric_value=float(value),
                    metric_args=dict(args),
                ))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Card text
# ---------------------------------------------------------------------------------------------------------------


def _results_table(records: Sequence[Mapping]) -> str:
    rows = ["| Dataset | Split | Selected on | Direction | R@1 | R@5 | R@10 | MdR | MnR | Test-time re-normalisation |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for record in records:
        for direction in DIRECTIONS:
            if direction not in record:
                continue
            values = record[direction]
            metrics = " | ".join(f"{values[name]:g}" for name in METRICS)
            rows.append(
                f"| {DATASET_NAMES.get(record['dataset'], record['dataset'])} | {record['split']} | "
                f"{record.get('selected_on') or 'not stated'} | {direction.replace('_', '-')} | {metrics} | "
                f"{record.get('test_time_renormalization') or 'none'} |"
            )
    return "\n".join(rows)


def _usage(repo_id: str, has_processor: bool) -> str:
    processor_line = (
        'processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)'
        if has_processor
        else "# This repository ships no processor files: preprocess with the modeling_avigate package.\n"
        "from modeling_avigate import AvigateProcessor\n"
        'processor = AvigateProcessor.from_pretrained("path/to/a/folder/with/avigate/processor/files")'
    )
    return f"""```python
import torch
from transformers import AutoModel, AutoProcessor

repo = "{repo_id}"
model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
{processor_line}

# Embed the gallery once (frames + sound track of each file) ...
videos = processor(videos=["clip1.mp4", "clip2.mp4"], return_tensors="pt")
with torch.no_grad():
    gallery = model.get_video_features(**videos)
    # ... then every query costs one text encoding and a similarity scan.
    texts = processor(text=["a dog barks at a car"], return_tensors="pt")
    text_embeds = model.get_text_features(**texts).pooler_output
    scores = model.similarity(text_embeds, gallery.last_hidden_state, gallery.video_mask)  # [texts, videos]
print(scores.argsort(dim=-1, descending=True))
print(gallery.attn_gates)  # how much audio each video let in, per fusion layer
```

With the `modeling_avigate` package installed, `AvigateModel.from_pretrained(repo)` and
`AvigateProcessor.from_pretrained(repo)` load the same files without `trust_remote_code`."""


def _count(number: int, noun: str) -> str:
    """`1 layer`, `4 layers`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _architecture(config: AvigateConfig, processor: Mapping[str, Any] | None) -> str:
    text, vision, audio = config.text_config, config.vision_config, config.audio_config
    inputs = ""
    if processor:
        inputs = (f"\n- Inputs: {_count(processor['num_frames'], 'frame')} sampled uniformly per video, captions of at "
                  f"most {_count(processor['max_length'], 'token')} (the processor's settings).")
    return f"""- Frames: CLIP ViT ({_count(vision.num_hidden_layers, 'layer')}, width {vision.hidden_size},
  patch {vision.patch_size}, {vision.image_size} px), CLS token → projection to D = {config.projection_dim}, plus a
  learned frame position table of {config.max_frames} entries.
- Text: CLIP text transformer ({_count(text.num_hidden_layers, 'layer')}, width {text.hidden_size}), EOS token →
  projection.
- Audio: AST ({_count(audio.num_hidden_layers, 'layer')}, width {audio.hidden_size}) on a 1024 × 128 log-mel
  spectrogram; its tokens are projected to D and compressed by an audio resampler
  ({_count(config.resampler_num_layers, 'layer')}, {config.num_audio_queries} learned queries).
- Gated fusion transformer ({_count(config.fusion_num_layers, 'layer')},
  {_count(config.fusion_num_attention_heads, 'head')}): per video
  and per layer, two tanh gates computed from the mean frame and mean audio query scale the audio cross-attention
  and feed-forward updates (`gate_mode="{config.gate_mode}"`); output mixed with the audio-free frames with weight
  {config.fusion_residual_weight:g}. Videos without a sound track get closed gates
  (`mask_missing_audio={config.mask_missing_audio}`).
- Score: mean of the global cosine and a log-sum-exp over frame cosines (λ = {config.lse_temperature:g}), times
  the learned logit scale. The fusion does not depend on the query, so a gallery is embedded once.{inputs}"""


PAPER_RECIPE = """The paper's MSR-VTT recipe (every value is a flag of the training script): AdamW with bias
correction, weight decay 0.2 (0 for biases and norms), gradient clipping 1.0, 10 % warm-up then cosine decay, 5 epochs,
global batch 128, 12 frames, 32 tokens, every (video, caption) pair of the 9k split per epoch. Learning rates: new
modules and audio projection 1e-4, CLIP towers 1e-7, audio query tokens 1e-2. Frozen: the AST encoder (except its
final layer norm) and CLIP's patch, token and position embeddings. Loss: symmetric InfoNCE with an adaptive margin
(λ = 0.2, δ = 0.1; 0.05 for VATEX) computed from text and audio-free video similarities, over batches gathered
across processes."""


def initialisation(training_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where the towers' weights came from, read from a run's training arguments.

    Returns `base_model` (the checkpoints the model was initialised from, for the card's metadata), `towers` (a
    sentence about the CLIP towers) and `audio` (a sentence naming the audio encoder's weights); all `None` when the
    arguments are unknown.

    Example:

    ```python
    >>> from modeling_avigate.hub.model_card import initialisation
    >>> initialisation({"clip_name_or_path": None, "ast_name_or_path": None, "model_name_or_path": None,
    ...                 "train_audio_encoder": False})["audio"]
    'a randomly initialised AST, frozen during training (no pretrained audio weights were loaded)'
    ```
    """
    if not training_args:
        return {"base_model": None, "towers": None, "audio": None}
    start = training_args.get("model_name_or_path")
    clip, ast = training_args.get("clip_name_or_path"), training_args.get("ast_name_or_path")
    frozen = "trained with the rest" if training_args.get("train_audio_encoder") else "frozen during training"
    if start:
        return {"base_model": [start], "towers": f"all weights start from `{start}`",
                "audio": f"the AST of `{start}`, {frozen}"}
    if clip and ast:
        return {"base_model": [clip, ast], "towers": f"CLIP towers from `{clip}`, AST from `{ast}`",
                "audio": f"the pretrained AST `{ast}`, {frozen}"}
    return {"base_model": [], "towers": "every tower trained from scratch (random initialisation)",
            "audio": f"a randomly initialised AST, {frozen} (no pretrained audio weights were loaded)"}


def _recipe(training_args: Mapping[str, Any] | None, processor: Mapping[str, Any] | None) -> str:
    """This checkpoint's own settings when its training arguments are known, else the paper's recipe, labelled."""
    if not training_args:
        return ("This checkpoint's training arguments were not supplied. For reference, " + PAPER_RECIPE[0].lower()
                + PAPER_RECIPE[1:])
    origin = initialisation(training_args)
    frames = f"{processor['num_frames']} frames and {processor['max_length']} tokens per pair, " if processor else ""
    hard_negatives = training_args.get("hard_negative_groups")
    groups = f" filled with look-alike groups ({', '.join(f'`{g}`' for g in hard_negatives)})" if hard_negatives else ""
    held_open = training_args.get("open_gates_proportion") or 0
    gates = (f" The first {held_open:.0%} of the epochs trained with every gate held open (ungated fusion) before "
             "the learned gates took over." if held_open else "")
    summary = (
        f"This checkpoint: {origin['towers']}; audio encoder: {origin['audio']}. Trained on the "
        f"`{training_args.get('benchmark')}` benchmark (`{training_args.get('train_split')}` split) for "
        f"{_count(training_args.get('epochs'), 'epoch')}, global batch {training_args.get('batch_size')}{groups}, {frames}"
        f"learning rate "
        f"{training_args.get('learning_rate'):g} (CLIP towers × {training_args.get('clip_lr_multiplier'):g}, audio "
        f"queries × {training_args.get('query_lr_multiplier'):g}), weight decay {training_args.get('weight_decay'):g},"
        f" {training_args.get('warmup_proportion', 0):.0%} warm-up then cosine decay, seed {training_args.get('seed')};"
        f" best epoch selected on `{training_args.get('selection_split') or 'the last epoch'}`.{gates}"
    )
    rows = "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in sorted(training_args.items()))
    return f"{summary}\n\nEvery training argument of the run:\n\n| argument | value |\n|---|---|\n{rows}"


LIMITATIONS = f"""- **Audio branch of the reference code.** The official implementation's AST checkpoint never loads (a
  key prefix mismatch under `strict=False`, after which the weights are re-initialised), so the released AVIGATE audio
  branch is a frozen *random* AST. This implementation loads the real AudioSet-trained AST when it is initialised
  from CLIP and AST checkpoints (the Training section says which weights this checkpoint's audio encoder has).
  Numbers obtained with the reference code, and checkpoints converted from it, therefore reflect a random audio
  encoder; models trained here from the pretrained AST are not numerically comparable to them.
- Other deliberate differences from the reference: padded frames are masked in the fusion self-attention and gate
  pooling (identical when no frame is padded); fp32 master weights instead of fp16 CLIP weights; the best epoch is
  selected on a validation split where one exists (the reference selected on the test split) — the results table
  states the selection split of each number.
- Test-time re-normalisations (e.g. dual softmax) inflate retrieval numbers and need the whole query set; they are
  off unless the results table says otherwise.
- CLIP's tokenizer is English-only and captions are truncated to the processor's token limit; a fixed number of
  uniformly sampled frames can miss short events; the whole sound track is squeezed into one 1024-frame spectrogram, so long clips lose temporal
  detail in the audio.
- The training sets (MSR-VTT, VATEX, Charades) are web and crowd-sourced videos with their own licences and biases;
  retrieval quality on other domains, languages and sound conditions is untested. The model ranks videos by
  similarity and should not be used for identifying people or for surveillance.
- Reference code: [{REFERENCE_CODE_URL}]({REFERENCE_CODE_URL}) (MIT licence)."""


def build_model_card(
    config: AvigateConfig,
    repo_id: str,
    eval_results: str | Path | Mapping | Sequence[Mapping] | None = None,
    *,
    has_processor: bool = True,
    license: str = "apache-2.0",
    datasets: Sequence[str] | None = None,
    base_model: Sequence[str] | None = None,
    training_args: Mapping[str, Any] | None = None,
    processor_settings: Mapping[str, Any] | None = None,
    extra_tags: Sequence[str] = (),
) -> ModelCard:
    """
    The model card of an AVIGATE checkpoint.

    Args:
        config: the model's config (its architecture is described in the card).
        repo_id: the Hub repository (used in the usage snippet and as the model-index name).
        eval_results: evaluation records (file, record or list; see the module docstring) for `model-index` and the
            results table.
        has_processor: whether the repository ships processor files (changes the usage snippet).
        license: the card's licence.
        datasets: Hub dataset ids for the metadata; defaults to the datasets named in `eval_results`.
        base_model: the checkpoints the model was initialised from; defaults to what `training_args` says (none for
            a model trained from scratch, and none when the arguments are unknown).
        training_args: the run's arguments (`train_args.json` of `examples/train.py`): the Training section describes
            this run from them (epochs, batch, learning rates, initialisation, audio encoder weights).
        processor_settings: `num_frames` and `max_length` (frames and caption tokens per pair), as
            [`saved_processor_settings`] reads them.
        extra_tags: tags added to the defaults.
    """
    records = load_eval_results(eval_results)
    if base_model is None:
        # Unknown training arguments declare no lineage rather than guess one.
        base_model = initialisation(training_args)["base_model"] or []
    if datasets is None:
        datasets = list(dict.fromkeys(record["dataset"] for record in records))
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        tags=list(dict.fromkeys([*TAGS, *extra_tags])),
        datasets=list(datasets) or None,
        metrics=["recall", "median_rank", "mean_rank"] if records else None,
        base_model=list(base_model) or None,
        model_name=model_name,
        eval_results=eval_results_to_model_index(records) or None,
    )
    results = (
        _results_table(records)
        if records
        else "No evaluation results were supplied with this checkpoint."
    )
    content = f"""---
{card_data.to_yaml()}
---

# {model_name}

AVIGATE ([Jeong et al., CVPR 2025]({PAPER_URL})) retrieves videos from text and text from videos. Frames and text
are encoded with CLIP, the sound track with an Audio Spectrogram Transformer, and a *gated* fusion transformer decides
per video how much audio enters the frame embeddings, so uninformative sound (background music, noise) can be shut
off. Training uses a contrastive loss with a margin that adapts to how similar two negatives already are.

This repository holds the weights, the configuration and the model/processor code (loaded with
`trust_remote_code=True`) of the `modeling_avigate` implementation for 🤗 transformers.

## Results

{results}

For reference, the paper reports on MSR-VTT 1k-A (ViT-B/32) text-to-video R@1/R@5/R@10/MdR/MnR
50.2 / 74.3 / 83.2 / 1.0 / 13.8 and video-to-text R@1 49.0, selected on the test split by the reference code.

## Usage

{_usage(repo_id, has_processor)}

## Model

{_architecture(config, processor_settings)}

## Training

{_recipe(training_args, processor_settings)}

## Limitations

{LIMITATIONS}

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard(content)


def saved_processor_settings(save_dir: Path) -> dict[str, int]:
    """Frames per video (the video processor's `num_frames`) and tokens per caption (the tokenizer's
    `model_max_length`) of the processor saved in `save_dir`."""
    processor = json.loads((save_dir / PROCESSOR_FILE).read_text(encoding="utf-8"))
    tokenizer = json.loads((save_dir / TOKENIZER_FILE).read_text(encoding="utf-8"))
    return {"num_frames": processor["video_processor"]["num_frames"], "max_length": tokenizer["model_max_length"]}


def write_model_card(
    save_dir: str | Path,
    eval_results: str | Path | Mapping | Sequence[Mapping] | None = None,
    *,
    repo_id: str | None = None,
    **card_kwargs: Any,
) -> Path:
    """
    Write `README.md` (the model card) into a saved AVIGATE folder.

    Args:
        save_dir: a folder written by `save_pretrained` (its `config.json` describes the model).
        eval_results: evaluation records; defaults to `save_dir/eval_results.json` when that file exists.
        repo_id: the repository named in the usage snippet; defaults to the folder's name.
        card_kwargs: passed to [`build_model_card`] (`license`, `datasets`, ...). `training_args` defaults to
            `save_dir/train_args.json` and `processor_settings` to the saved processor's, when present.

    Returns:
        The path of the written card.
    """
    save_dir = Path(save_dir)
    if eval_results is None:
        eval_results = find_eval_results(save_dir)
    config = AvigateConfig.from_pretrained(save_dir)
    card_kwargs.setdefault("has_processor", (save_dir / PROCESSOR_FILE).is_file())
    if card_kwargs.get("training_args") is None and (save_dir / TRAIN_ARGS_FILE).is_file():
        card_kwargs["training_args"] = json.loads((save_dir / TRAIN_ARGS_FILE).read_text(encoding="utf-8"))
    if card_kwargs.get("processor_settings") is None and (save_dir / PROCESSOR_FILE).is_file():
        card_kwargs["processor_settings"] = saved_processor_settings(save_dir)
    card = build_model_card(config, repo_id or save_dir.resolve().name, eval_results, **card_kwargs)
    path = save_dir / "README.md"
    card.save(path)
    return path
