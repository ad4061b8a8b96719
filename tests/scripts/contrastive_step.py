"""Two SGD steps of AVIGATE's contrastive training on a fixed batch, split across however many processes run it.

    contrastive_step.py OUT_DIR

Run by tests/training/test_distributed.py with 1 and 2 processes; writes the updated parameters of process 0 and the loss
(averaged over the processes) to OUT_DIR/global.safetensors, and the same with the local form of the loss (each
process's rows against the gathered batch) to OUT_DIR/local.safetensors.
"""

import os
import sys

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_file

from conftest import tiny_config_kwargs, tiny_token_ids
from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.training import LearningRates, build_parameter_groups, freeze_for_training


GLOBAL_BATCH = 4


def fixed_batch() -> dict:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(10, 400, (GLOBAL_BATCH, 7), generator=generator)
    ids = tiny_token_ids()
    input_ids[:, 0], input_ids[:, -1] = ids["bos_token_id"], ids["eos_token_id"]
    video_mask = torch.ones(GLOBAL_BATCH, 3, dtype=torch.long)
    video_mask[1, 2] = 0
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(GLOBAL_BATCH, 3, 3, 32, 32, generator=generator),
        "video_mask": video_mask,
        "input_values": torch.randn(GLOBAL_BATCH, 1024, 128, generator=generator),
        "has_audio": torch.tensor([True, True, False, True]),
    }


def two_steps(accelerator: Accelerator, local_loss: bool) -> dict[str, torch.Tensor]:
    """The parameters after two steps from the same initial model, and the last loss averaged over the processes."""
    set_seed(0)
    model = AvigateModel(AvigateConfig(**tiny_config_kwargs()))
    model.contrastive_loss.local_loss = local_loss
    freeze_for_training(model)
    groups = build_parameter_groups(model, LearningRates(base=0.1, clip_multiplier=1.0))
    # Plain SGD: the update is the (clipped) gradient itself. Adam would divide near-zero gradients by their own
    # magnitude and turn summation-order noise into ±lr steps, hiding whether the gradients really agree.
    optimizer = torch.optim.SGD([{k: v for k, v in g.items() if k not in ("names", "family")} for g in groups])
    model, optimizer = accelerator.prepare(model, optimizer)
    per_process = GLOBAL_BATCH // accelerator.num_processes
    rank = accelerator.process_index
    batch = {k: v[rank * per_process : (rank + 1) * per_process] for k, v in fixed_batch().items()}
    for _ in range(2):
        loss = model(**batch, return_loss=True).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    state = {k: v.detach().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    state["loss"] = accelerator.reduce(loss.detach(), "mean").reshape(1)
    return state


def main(out_dir: str) -> None:
    accelerator = Accelerator()
    for form in ("global", "local"):
        state = two_steps(accelerator, local_loss=form == "local")
        if accelerator.is_main_process:
            save_file(state, os.path.join(out_dir, f"{form}.safetensors"))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
