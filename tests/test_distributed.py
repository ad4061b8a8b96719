"""2 processes × B must give the same parameter update as 1 process × 2B."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS_DIR, "scripts", "contrastive_step.py")


def run_step(num_processes: int, out_path: str) -> dict[str, torch.Tensor]:
    # `--cpu` would silently start one process; `--multi_gpu` starts two, and ACCELERATE_USE_CPU makes each of them
    # join a gloo process group on the CPU (without it every process believes it is alone).
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        SCRIPT, out_path,
    ] if num_processes > 1 else [sys.executable, SCRIPT, out_path]
    env = {**os.environ, "PYTHONPATH": TESTS_DIR, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return load_file(out_path)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_whole_batch(tmp_path):
    single = run_step(1, str(tmp_path / "single.safetensors"))
    double = run_step(2, str(tmp_path / "double.safetensors"))
    assert torch.allclose(single["loss"], double["loss"], atol=1e-6)
    initial = run_initial_parameters()
    moved = 0
    for name, start in initial.items():
        update_single, update_double = single[name] - start, double[name] - start
        torch.testing.assert_close(update_double, update_single, atol=1e-6, rtol=1e-4, msg=f"update of {name} differs")
        moved += int(update_single.abs().max() > 1e-4)
    assert moved > 50, "the steps should update most parameters"


def run_initial_parameters() -> dict[str, torch.Tensor]:
    sys.path.insert(0, TESTS_DIR)
    from accelerate.utils import set_seed

    from conftest import tiny_config_kwargs
    from modeling_avigate import AvigateConfig, AvigateModel

    set_seed(0)
    return AvigateModel(AvigateConfig(**tiny_config_kwargs())).state_dict()
