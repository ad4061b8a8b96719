"""The contrastive loss across processes: 2 processes × B must give the same parameter update as 1 process × 2B, with
the global and the local form of the loss; the local form's algebra; fp32 scores and loss under autocast."""

import os
import subprocess
import sys
from functools import partial

import pytest
import torch
from builders import REPO, run_script
from conftest import tiny_config_kwargs
from safetensors.torch import load_file
from scripts.contrastive_step import fixed_batch
from torch import nn

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.loss_avigate import AvigateContrastiveLoss, avigate_contrastive_loss
from modeling_avigate.modeling_avigate import multi_grained_similarity, pool_video_embeds


TESTS_DIR = os.path.join(REPO, "tests")
SCRIPT = os.path.join(TESTS_DIR, "scripts", "contrastive_step.py")


def run_steps(num_processes: int, out_dir) -> dict[str, dict[str, torch.Tensor]]:
    """The script's parameters and loss after two steps, with the global and with the local form of the loss."""
    if num_processes == 1:  # forked from the test run's preloaded server: no launcher, no fresh imports
        result = run_script(SCRIPT, [str(out_dir)])
        assert result.returncode == 0, result.output[-3000:]
    else:
        # `--cpu` would silently start one process; `--multi_gpu` starts two, and ACCELERATE_USE_CPU makes each of
        # them join a gloo process group on the CPU (without it every process believes it is alone).
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            SCRIPT, str(out_dir),
        ]
        env = {**os.environ, "PYTHONPATH": TESTS_DIR, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
               "ACCELERATE_USE_CPU": "true"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {form: load_file(os.path.join(out_dir, f"{form}.safetensors")) for form in ("global", "local")}


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory) -> tuple[dict, dict]:
    return run_steps(1, tmp_path_factory.mktemp("single")), run_steps(2, tmp_path_factory.mktemp("double"))


@pytest.mark.slow
@pytest.mark.parametrize("form", ["global", "local"])
def test_two_processes_match_one_process_with_the_whole_batch(one_and_two_processes, form):
    single, double = one_and_two_processes[0]["global"], one_and_two_processes[1][form]
    assert torch.allclose(single["loss"], double["loss"], atol=1e-6)
    initial = run_initial_parameters()
    moved = 0
    for name, start in initial.items():
        update_single, update_double = single[name] - start, double[name] - start
        torch.testing.assert_close(update_double, update_single, atol=1e-6, rtol=1e-4, msg=f"update of {name} differs")
        moved += int(update_single.abs().max() > 1e-4)
    assert moved > 50, "the steps should update most parameters"


def run_initial_parameters() -> dict[str, torch.Tensor]:
    from accelerate.utils import set_seed

    set_seed(0)
    return AvigateModel(AvigateConfig(**tiny_config_kwargs())).state_dict()


def test_local_loss_rows_average_to_the_global_loss_with_the_same_gradients():
    """`local_loss` on 3 simulated processes of 2 pairs: each process's rows against the whole batch. Their mean is the
    global loss, its gradients the global ones, and each block of scores the global scores' block."""
    processes, per_process, num_frames, dim = 3, 2, 4, 8
    generator = torch.Generator().manual_seed(0)
    size = processes * per_process
    texts = nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=-1).requires_grad_()
    frames = nn.functional.normalize(torch.randn(size, num_frames, dim, generator=generator), dim=-1).requires_grad_()
    mask = torch.ones(size, num_frames, dtype=torch.long)
    mask[1, 3] = mask[4, 2:] = 0
    videos = pool_video_embeds(frames, mask)
    visual = nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=-1)
    loss_function = AvigateContrastiveLoss(partial(multi_grained_similarity, lse_temperature=0.5), 0.5, 0.1)
    scale = torch.tensor(20.0)

    global_loss, global_scores = loss_function(texts, videos, frames, mask, visual, scale)  # one process: all rows
    shares = []
    for rank in range(processes):
        own = slice(rank * per_process, (rank + 1) * per_process)
        local = [texts[own], videos[own], frames[own], mask[own], visual[own]]
        share, scores = loss_function.local_rows_loss(local, [texts, videos, frames, mask, visual], scale, own)
        torch.testing.assert_close(scores, global_scores[own, own])
        shares.append(share)
    local_loss = torch.stack(shares).mean()
    torch.testing.assert_close(local_loss, global_loss)
    assert not torch.allclose(shares[0], global_loss), "each process's share differs from the global loss"
    for expected, got in zip(torch.autograd.grad(global_loss, (texts, frames), retain_graph=True),
                             torch.autograd.grad(local_loss, (texts, frames))):
        torch.testing.assert_close(got, expected)


def test_loss_under_bf16_autocast_is_the_fp32_loss_of_the_same_embeddings():
    """Accelerate autocasts the whole forward, loss included; the scores and loss must still be fp32, as when the
    loss was computed outside autocast."""
    torch.manual_seed(0)
    model = AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(**fixed_batch(), return_loss=True)
    embeds = [outputs[name].float() for name in ("text_embeds", "video_embeds", "frame_embeds")]
    similarity = multi_grained_similarity(*embeds, outputs.video_mask, outputs.logit_scale,
                                          model.config.lse_temperature)
    expected = avigate_contrastive_loss(similarity, embeds[0], outputs.visual_embeds.float(), outputs.logit_scale,
                                        model.config.margin_scale, model.config.margin_max)
    assert outputs.text_embeds.dtype == torch.bfloat16 and outputs.loss.dtype == torch.float32
    assert torch.equal(outputs.loss, expected)
    torch.testing.assert_close(outputs.logits_per_text, similarity.to(torch.bfloat16))
