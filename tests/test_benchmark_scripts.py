"""The GPU script and the embedding and accuracy benchmarks run end to end on the CPU with their smallest sizes, and
the GPU script refuses at once, with a clear message, on a machine without a GPU."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import REPO, run_script


def run(command: list[str], tmp_path: Path, **environment) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable, **environment}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """Data rows of the first table after `heading`, as lists of cells."""
    section = markdown.split(heading, 1)[1].split("\n### ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU: the refusal cannot happen")
def test_gpu_script_without_a_gpu_fails_fast_with_a_clear_message(tmp_path):
    result = run(["bash", str(REPO / "benchmarks" / "gpu.sh")], tmp_path, OUT=str(tmp_path / "out"))
    assert result.returncode == 1
    assert "no NVIDIA GPU" in result.stderr and "--dry-run" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gpu_script_dry_run_measures_every_section(tmp_path):
    out = tmp_path / "out"
    result = run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--dry-run"], tmp_path, OUT=str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "gpu_benchmarks.md").read_text()

    training = table_rows(report, "### Training step")
    assert [(row[0], row[1], row[2]) for row in training] == [
        (batch, audio, checkpointing) for checkpointing in ("off", "on") for audio in ("ast", "cache")
        for batch in ("2", "4")]
    for row in training:
        step, samples_per_s, flops = float(row[3]), float(row[4]), float(row[6])
        assert step > 0 and flops > 0
        assert samples_per_s == pytest.approx(int(row[0]) / step, rel=0.02, abs=0.06)  # printed to 0.1
    embedding = table_rows(report, "### Embedding throughput")
    assert [row[1] for row in embedding] == ["fp32", "bf16", "bf16"]
    assert all(float(row[2]) > 0 for row in embedding)
    search = table_rows(report, "### Search")
    assert [row[0] for row in search] == ["1", "32"]
    assert float(search[1][2]) == pytest.approx(float(search[1][1]) / 32, rel=0.02)
    assert "failed" not in report and "skipped" not in report


@pytest.mark.slow
def test_embedding_benchmark_runs_and_compares_with_the_naive_baseline(tmp_path):
    # Forked from the preloaded server; each method still embeds in a fresh interpreter of its own.
    result = run_script(str(REPO / "benchmarks" / "bench_embed.py"), ["--size", "tiny", "--videos", "2", "--methods",
                                                                     "naive", "index/int8"])
    assert result.returncode == 0, result.output[-3000:]
    rows = {row[0]: row for row in table_rows(result.output, "tiny model")}
    assert set(rows) == {"naive", "index/int8"}
    assert rows["naive"][2] == "1.00"
    # The int8 index stays close to the naive fp32 embeddings of the same clips.
    mean, low = (float(value) for value in re.findall(r"[0-9.]+", rows["index/int8"][-2]))
    assert 0.99 < low <= mean <= 1.0


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A saved tiny model with its processor, for the accuracy benchmark's `--model`."""
    from builders import tiny_processor_and_model

    processor, model = tiny_processor_and_model(tmp_path)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_accuracy_benchmark_compares_each_encoder_on_its_own(synthetic_dir, tiny_model_dir, tmp_path):
    result = run_script(str(REPO / "benchmarks" / "bench_accuracy.py"), ["--model", str(tiny_model_dir), "--data-dir",
                                                                        str(synthetic_dir), "--precisions",
                                                                        "int8:audio", "int8"])
    assert result.returncode == 0, result.output[-3000:]
    assert re.search(r"fp32 gap between each caption's rank-7 and rank-8 scores: median \d", result.output)
    rows = {row[0]: row for row in table_rows(result.output, "fp32 gap")}
    assert list(rows) == ["fp32", "int8:audio", "int8"]
    assert rows["fp32"][5] == "1.0000" and rows["fp32"][6] == "1.00000 / 1.00000"
    for variant in ("int8:audio", "int8"):
        mean_cosine = float(rows[variant][6].split(" / ")[0])
        assert 0.99 < mean_cosine < 1.0 or rows[variant][6] == "1.00000 / 1.00000"
    assert rows["int8:audio"][6] != rows["int8"][6]  # the vision tower's rounding shows only in the second


def test_accuracy_benchmark_refuses_an_unknown_encoder(synthetic_dir, tiny_model_dir, tmp_path):
    result = run_script(str(REPO / "benchmarks" / "bench_accuracy.py"), ["--model", str(tiny_model_dir), "--data-dir",
                                                                        str(synthetic_dir), "--precisions", "int8:text"])
    assert result.returncode != 0 and "the part after ':' must be audio or vision" in result.output


def test_moment_search_benchmark_finds_segments_of_a_concatenated_file(synthetic_dir, tiny_model_dir, monkeypatch,
                                                                        capsys):
    import numpy as np
    import torch

    from builders import load_script

    bench = load_script("benchmarks/bench_moment_search.py")
    order = bench.clip_order(3, 10, np.random.default_rng(0))
    assert all(a != b for a, b in zip(order, order[1:])) and sorted(order[:9]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    monkeypatch.setattr(sys, "argv", ["bench", "--model", str(tiny_model_dir), "--data-dir", str(synthetic_dir),
                                      "--hours", "0.01", "--threads", str(torch.get_num_threads())])
    bench.main()
    output = capsys.readouterr().out
    assert "8 clips of 2 s, 18 placed (0.6 minutes; each clip 2× or 3×)" in output
    every_segment, distinct = ([[cell.strip() for cell in line.strip("|").split("|")]
                                for line in table.split("\n\n", 1)[0].splitlines()[2:] if line.startswith("|")]
                               for table in output.split("| setting | all R@1 / R@5 / MdR |")[1:3])
    # Segments as long as the clips: one per placed clip; half-overlapping ones: one more between each pair.
    assert [row[0] for row in every_segment] == ["whole clips (8 files)", "2 s segments every 2 s (18 segments)",
                                                 "2 s segments every 1 s (35 segments)"]
    assert [row[0] for row in distinct] == [row[0] for row in every_segment[1:]]
    for row, once in zip(every_segment[1:], distinct):
        recall_1, recall_5, median = (float(value) for value in row[1].split(" / "))
        assert 0 <= recall_1 <= recall_5 <= 100 and median >= 1
        # Leaving copies out can only move the first hit up.
        once_1, once_5, once_median = (float(value) for value in once[1].split(" / "))
        assert once_1 >= recall_1 and once_5 >= recall_5 and once_median <= median
