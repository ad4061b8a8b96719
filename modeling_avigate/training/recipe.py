"""What a run trains and how: the model and processor it starts from, what stays frozen, the optimiser's parameter
groups and learning rates, mixed precision, the epochs trained with the gates held open, and the sampler that fills
batches with look-alike pairs."""

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPTokenizer

from ..configuration_avigate import AvigateConfig
from ..data.synthetic import synthetic_tokenizer
from ..modeling_avigate import AvigateModel
from ..pipeline import HardNegativeSampler, TrainingPairs
from ..processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor
from .arguments import TrainArguments


@dataclass
class LearningRates:
    """The paper's learning rates: new modules at `base`, CLIP towers at `base × clip_multiplier`, audio queries at
    `base × query_multiplier`."""

    base: float = 1e-4
    clip_multiplier: float = 1e-3
    query_multiplier: float = 100.0
    weight_decay: float = 0.2


CLIP_PREFIXES = ("text_model.", "vision_model.", "text_projection.", "visual_projection.", "logit_scale")
QUERY_PARAMETERS = ("audio_resampler.query_tokens",)
# Token, patch and position embeddings of both CLIP towers stay at their pretrained values.
FROZEN_CLIP_PREFIXES = (
    "text_model.embeddings.token_embedding.",
    "text_model.embeddings.position_embedding.",
    "vision_model.embeddings.patch_embedding.",
    "vision_model.embeddings.position_embedding.",
)


def freeze_for_training(
    model: AvigateModel, train_audio_encoder: bool = False, freeze_clip_embeddings: bool = True
) -> None:
    """Freeze the AST encoder (all but its final LayerNorm) and CLIP's embeddings, as in the paper's recipe."""
    for name, parameter in model.named_parameters():
        if name.startswith(FROZEN_CLIP_PREFIXES):
            parameter.requires_grad_(not freeze_clip_embeddings)
        elif name.startswith("audio_model.") and not name.startswith("audio_model.layernorm."):
            parameter.requires_grad_(train_audio_encoder)


def hold_gates_open(model: AvigateModel, held: bool) -> None:
    """Run every fusion layer with its gates fixed at 1, as ungated fusion does (`held=True`), or with the model's
    own `gate_mode` again (`held=False`). The model's config, and so every saved copy of it, keeps its gate mode."""
    mode = "open" if held else model.config.gate_mode
    for layer in model.fusion.layers:
        layer.gate_mode = mode


def gates_held_open(epoch: int, epochs: int, open_gates_proportion: float, gate_mode: str) -> bool:
    """Whether `epoch` (0-based) trains with the gates held open: one of the first `open_gates_proportion` of the
    run's `epochs` (never its last, so it ends with a model to select) of a learned-gate model (visual-only and
    ungated runs have no gates to hold)."""
    held_epochs = min(round(open_gates_proportion * epochs), epochs - 1)
    return epoch < held_epochs and gate_mode == "learned"


def is_no_decay(name: str, parameter: nn.Parameter) -> bool:
    """Biases, norms and scalars are not decayed."""
    return parameter.ndim < 2 or "norm" in name or name.endswith(".bias")


def build_parameter_groups(model: AvigateModel, rates: LearningRates) -> list[dict]:
    """AdamW groups by (learning-rate family, decay); only trainable parameters, every one exactly once."""
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name in QUERY_PARAMETERS:
            family, lr = "queries", rates.base * rates.query_multiplier
        elif name.startswith(CLIP_PREFIXES):
            family, lr = "clip", rates.base * rates.clip_multiplier
        else:
            family, lr = "new", rates.base
        no_decay = is_no_decay(name, parameter)
        group = groups.setdefault(
            (family, no_decay),
            {"params": [], "names": [], "lr": lr, "weight_decay": 0.0 if no_decay else rates.weight_decay,
             "family": family},
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return list(groups.values())


def resolve_mixed_precision(requested: str) -> str:
    """`auto`: what `accelerate launch` was told, else bf16 autocast where the GPU supports it, else fp32."""
    if requested != "auto":
        return requested
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_optimizer(model: AvigateModel, args: TrainArguments) -> torch.optim.AdamW:
    """AdamW over the recipe's parameter groups (`build_parameter_groups`)."""
    rates = LearningRates(args.learning_rate, args.clip_lr_multiplier, args.query_lr_multiplier, args.weight_decay)
    groups = build_parameter_groups(model, rates)
    # foreach: on CPU torch defaults to a Python loop over the tensors; the foreach kernels give the same weights,
    # bit for bit, in less time per step.
    return torch.optim.AdamW([{k: v for k, v in g.items() if k not in ("names", "family")} for g in groups],
                             foreach=True)


def build_model(args: TrainArguments, processor: AvigateProcessor) -> AvigateModel:
    overrides = dict(args.model)
    if args.gate_mode is not None:
        overrides["gate_mode"] = args.gate_mode
    if args.model_name_or_path:
        return AvigateModel.from_pretrained(args.model_name_or_path, **overrides)
    if args.clip_name_or_path and args.ast_name_or_path:
        return AvigateModel.from_clip_ast_pretrained(args.clip_name_or_path, args.ast_name_or_path, **overrides)
    # A randomly initialised text tower takes its vocabulary and special tokens from the processor's tokenizer.
    tokenizer = processor.tokenizer
    overrides["text_config"] = {
        **overrides.get("text_config", {}), "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
    }
    return AvigateModel(AvigateConfig(**overrides))


def processor_from_settings(
    tokenizer: str = "openai/clip-vit-base-patch32", image_size: int = 224, max_length: int = 32,
    audio_channel: str = "mix", **video_settings
) -> AvigateProcessor:
    """A processor for a randomly initialised model: CLIP's frame pipeline at `image_size` (`video_settings` such as
    `num_frames` and `fps` go to `AvigateVideoProcessor`), AVIGATE's fbank, and the tokenizer `tokenizer` (a path or
    Hub id, or `"synthetic"` for the synthetic benchmark's vocabulary) cutting captions at `max_length` tokens."""
    video_processor = AvigateVideoProcessor(size=image_size, crop_size=image_size, **video_settings)
    text_tokenizer = synthetic_tokenizer() if tokenizer == "synthetic" else CLIPTokenizer.from_pretrained(tokenizer)
    text_tokenizer.model_max_length = max_length
    return AvigateProcessor(AvigateFeatureExtractor(audio_channel=audio_channel), video_processor, text_tokenizer)


def build_processor(args: TrainArguments) -> AvigateProcessor:
    if args.model_name_or_path and os.path.isfile(os.path.join(args.model_name_or_path, "processor_config.json")):
        return AvigateProcessor.from_pretrained(args.model_name_or_path)
    return processor_from_settings(**args.processor)


def hard_negative_sampler(dataset: TrainingPairs, groups: list[str] | None, per_process: int,
                          seed: int) -> HardNegativeSampler | None:
    """The sampler of `--hard_negative_groups` (None without them); each level's key holds its own columns and those
    of the coarser levels."""
    if not groups:
        return None
    specs = [spec.rpartition(":") for spec in groups]
    for spec, (names, _, size) in zip(groups, specs):
        if not names or not size.isdigit():
            raise SystemExit(f"--hard_negative_groups: {spec!r} is not COLUMN[,COLUMN...]:SIZE")
    if per_process % int(specs[0][2]):
        raise SystemExit(f"--hard_negative_groups: the first group size ({specs[0][2]}) must divide the batch per "
                         f"process ({per_process})")
    levels, columns = [], []
    try:
        for names, _, size in specs:
            columns = columns + names.split(",")  # a finer level's key holds the coarser levels' columns too
            levels.append((dataset.column_values(columns), int(size)))
        return HardNegativeSampler(levels, seed=seed)
    except ValueError as error:  # a missing column, or sizes that do not nest
        raise SystemExit(f"--hard_negative_groups: {error}") from None
