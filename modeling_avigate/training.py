"""Training helpers for AVIGATE: freezing, parameter groups, the distributed contrastive loss, the checkpoint
folders of an output directory and their rotation.

They are small and framework-agnostic so `examples/train.py` (Accelerate) and the tests share one implementation.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn

from .fingerprints import tensor_fingerprint
from .folders import is_owned
from .modeling_avigate import AvigateModel, AvigateOutput, avigate_contrastive_loss, multi_grained_similarity


# Folder kinds (see `modeling_avigate.folders`) of what a training run writes.
CHECKPOINT_KIND = "checkpoint"
BEST_MODEL_KIND = "best_model"
TRAINING_RUN_KIND = "training_run"
CHECKPOINT_PREFIX = "checkpoint-epoch-"


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


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process along dim 0; gradients flow back to each process's own slice.

    The backward of torch's autograd all_gather sums the gradients of all processes, so with every process computing
    the same full-batch loss and DDP averaging, the update equals that of one process holding the whole batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def contrastive_loss_from_outputs(
    outputs: AvigateOutput, model_config, gather: Callable[[torch.Tensor], torch.Tensor] = all_gather_with_grad
) -> torch.Tensor:
    """The AVIGATE loss over the contrastive batch of all processes, from `forward`'s outputs only (DDP-safe)."""
    # Scores and the loss in fp32 even when the towers ran under bf16 autocast.
    text_embeds = gather(outputs.text_embeds.float())
    video_embeds = gather(outputs.video_embeds.float())
    frame_embeds = gather(outputs.frame_embeds.float())
    video_mask = gather(outputs.video_mask)
    visual_embeds = gather(outputs.visual_embeds.float())
    similarity = multi_grained_similarity(
        text_embeds, video_embeds, frame_embeds, video_mask, outputs.logit_scale, model_config.lse_temperature
    )
    return avigate_contrastive_loss(
        similarity, text_embeds, visual_embeds, outputs.logit_scale, model_config.margin_scale, model_config.margin_max
    )


def checkpoint_dir(output_dir: str, epoch: int) -> str:
    """Where epoch `epoch` (1-based) of a run in `output_dir` is saved."""
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{epoch}")


def checkpoint_epochs(output_dir: str) -> list[int]:
    """The epochs of `output_dir`'s checkpoint folders, ascending; folders without the package's checkpoint marker
    (a user's copy, another tool's, a killed save) are not counted."""
    if not os.path.isdir(output_dir):
        return []
    epochs = (name[len(CHECKPOINT_PREFIX):] for name in os.listdir(output_dir) if name.startswith(CHECKPOINT_PREFIX))
    return sorted(
        int(epoch) for epoch in epochs if epoch.isdigit() and is_owned(checkpoint_dir(output_dir, int(epoch)),
                                                                      CHECKPOINT_KIND)
    )


def latest_checkpoint(output_dir: str) -> str | None:
    """The `checkpoint-epoch-N` folder of `output_dir` with the highest N, or `None` when there is none."""
    epochs = checkpoint_epochs(output_dir)
    return checkpoint_dir(output_dir, epochs[-1]) if epochs else None


def checkpoints_to_delete(epochs: list[int], save_total_limit: int | None, best_epoch: int | None) -> list[int]:
    """The checkpoints `--save_total_limit` removes, with transformers' `Trainer` rule: keep the `save_total_limit`
    most recent, counting the best epoch's as the second most recent, so it is never removed (with a limit of 1 and a
    best epoch that is not the last, two are kept).

    Example:

    ```python
    >>> from modeling_avigate.training import checkpoints_to_delete
    >>> checkpoints_to_delete([1, 2, 3, 4], save_total_limit=1, best_epoch=2)
    [1, 3]
    >>> checkpoints_to_delete([1, 2, 3, 4], save_total_limit=2, best_epoch=4)
    [1, 2]
    ```
    """
    if save_total_limit is None:
        return []
    ordered = sorted(epochs)
    if best_epoch in ordered and best_epoch != ordered[-1]:
        ordered.remove(best_epoch)
        ordered.insert(len(ordered) - 1, best_epoch)
    keep = 2 if save_total_limit == 1 and best_epoch in ordered and ordered[-1] != best_epoch else save_total_limit
    return sorted(ordered[: max(len(ordered) - keep, 0)])


def weights_checksum(model_dir: str) -> str:
    """SHA-256 of the tensors in `model_dir/model.safetensors` (names and values): the identity of a saved model that
    the trainer state and `metrics.json` record."""
    return tensor_fingerprint(load_file(os.path.join(model_dir, "model.safetensors")))


def write_json_atomically(path: str, data: dict) -> None:
    """Write `data` as JSON to a temporary sibling and rename it over `path`: a kill leaves the old file or the new."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    with open(temporary, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(temporary, path)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""
