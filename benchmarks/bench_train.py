"""Training throughput of AvigateModel with and without the frozen-AST audio cache.

One training step is what `examples/train.py` does per batch: forward with the contrastive loss (`return_loss=True`;
under autocast with `--dtype bf16`, the loss itself in fp32), backward, gradient clipping and an AdamW step over
`build_parameter_groups` after `freeze_for_training` (AST frozen except its final LayerNorm, CLIP embeddings frozen).
Two ways of feeding the sound:

- `ast`: fbank `input_values` [B, 1024, 128] go through the frozen AST encoder at every step;
- `cache`: the AST token states [B, 1214, 768] are read back from a `FeatureCache` (fp16 on disk, memory-mapped) and
  passed as `audio_hidden_states`, which skips the AST; reading the batch's rows is inside the timed step.

Fbank extraction (the processor's job, in the data loader) is timed in neither, so the measured cache speed-up leaves
out the audio decoding that a cached run also saves. Every (batch size, configuration, checkpointing) combination runs
in its own subprocess, so the peak memory belongs to that combination alone: peak RSS of the process on CPU,
`torch.cuda.max_memory_allocated` on CUDA.

Usage:

```bash
python benchmarks/bench_train.py                                  # full size, CPU, batch 2, the four configurations
python benchmarks/bench_train.py --batch-sizes 2 4 --configs sdpa/ast sdpa/cache
python benchmarks/bench_train.py --size tiny --steps 3 --warmup 1  # seconds: a smoke test of the script itself
bash benchmarks/gpu.sh                                            # every GPU measurement in one call (bench_gpu.py)
```

Prints a markdown table (median step time over `--steps` measured steps after `--warmup` untimed ones, samples/s,
peak memory) and the cache speed-up, samples/s with the cache over samples/s through the AST, measured in the same run.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from bench_model import build_inputs, peak_rss_mib


CONFIGS = ("eager/ast", "eager/cache", "sdpa/ast", "sdpa/cache")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
CHECKPOINTING = ("off", "on")
MAX_GRAD_NORM = 1.0  # as in examples/train.py


def build_model(size: str, attn: str, checkpointing: str, device: torch.device):
    """Random-init model frozen as in training, with AdamW over the real parameter groups."""
    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.testing_utils import tiny_config_kwargs
    from modeling_avigate.training import LearningRates, build_parameter_groups, freeze_for_training

    config = AvigateConfig(**tiny_config_kwargs()) if size == "tiny" else AvigateConfig()
    model = AvigateModel._from_config(config, attn_implementation=attn).to(device).train()
    freeze_for_training(model)
    if checkpointing == "on":
        model.activation_checkpointing_enable()
    groups = build_parameter_groups(model, LearningRates())
    # examples/train.py drops the bookkeeping keys the same way before building its optimiser.
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k not in ("names", "family")} for g in groups])
    return model, optimizer


def write_audio_cache(model, input_values: torch.Tensor, directory: str):
    """Cache the frozen AST's token states of this batch, as `build_audio_cache` does, and open it for reading."""
    from modeling_avigate.feature_cache import FeatureCache

    with torch.no_grad():
        hidden = model.get_audio_hidden_states(input_values)
    video_ids = [str(index) for index in range(len(input_values))]
    batches = [(video_ids, {"audio_hidden_states": hidden})]
    return FeatureCache.write(directory, batches, len(video_ids), fingerprint="bench"), video_ids


def run_worker(job: dict) -> dict:
    """Build one model, time `warmup + steps` training steps, return the measurements."""
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    attn, audio = job["config"].split("/")
    torch.manual_seed(0)
    model, optimizer = build_model(job["size"], attn, job["checkpointing"], device)
    inputs = {name: tensor.to(device) for name, tensor in
              build_inputs(model.config, job["batch_size"], job["num_frames"], job["text_length"]).items()}
    autocast_dtype = DTYPES[job["dtype"]]
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext

    with tempfile.TemporaryDirectory() as directory:
        cache = video_ids = None
        if audio == "cache":
            cache, video_ids = write_audio_cache(model, inputs.pop("input_values"), os.path.join(directory, "audio"))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for step in range(job["warmup"] + job["steps"]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            if cache is not None:
                # fp16 rows as the data loader yields them; the model casts them to the frames' dtype.
                rows = torch.stack([cache.get(video_id)["audio_hidden_states"] for video_id in video_ids])
                inputs["audio_hidden_states"] = rows.to(device, non_blocking=True)
            with autocast():  # as Accelerate autocasts the model's forward; the loss inside runs in fp32
                loss = model(**inputs, return_loss=True).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= job["warmup"]:
                times.append(time.perf_counter() - start)
            print(f"  {job['config']} batch {job['batch_size']} step {step}: {time.perf_counter() - start:.2f} s",
                  file=sys.stderr, flush=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    median = statistics.median(times)
    return {
        **job,
        "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "median_s": median,
        "min_s": min(times),
        "samples_per_s": job["batch_size"] / median,
        "peak_mib": peak,
        "threads": torch.get_num_threads(),
    }


def run_job(job: dict) -> dict:
    """Run one combination in a fresh interpreter; a failure (e.g. out of memory) becomes a row, not a crash."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        return {**job, "error": f"exit status {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def speedups(rows: list[dict]) -> list[str]:
    """Cache over AST samples/s for every pair of rows that differ only in the audio path."""
    measured = {(row["batch_size"], row["config"], row["checkpointing"]): row for row in rows if "error" not in row}
    lines = []
    for (batch_size, config, checkpointing), cached in measured.items():
        attn, audio = config.split("/")
        through_ast = measured.get((batch_size, f"{attn}/ast", checkpointing))
        if audio == "cache" and through_ast is not None:
            ratio = cached["samples_per_s"] / through_ast["samples_per_s"]
            lines.append(f"- batch {batch_size}, {attn}, checkpointing {checkpointing}: cache speed-up {ratio:.2f}×")
    return lines


def markdown_table(rows: list[dict], args: argparse.Namespace) -> str:
    """Same layout as bench_model.py's table, plus samples/s and the cache speed-ups below it."""
    device = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
    memory = "peak RSS" if args.device == "cpu" else "peak CUDA allocated"
    threads = next((row["threads"] for row in rows if "threads" in row), "?")
    header = (
        f"Full training step (forward + contrastive loss + backward + clip + AdamW, AST and CLIP embeddings frozen); "
        f"{args.size} model, {args.num_frames} frames, text length {args.text_length}, {args.dtype}; median and min "
        f"of {args.steps} steps after {args.warmup} warm-up; {device}, torch {torch.__version__}, {threads} "
        "threads.\n\n"
        f"| batch | attention | audio | grad. checkpointing | trainable params (M) | median step (s) | min step (s) "
        f"| samples/s | {memory} (MiB) |\n|---:|---|---|---|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for row in rows:
        attn, audio = row["config"].split("/")
        prefix = f"| {row['batch_size']} | {attn} | {audio} | {row['checkpointing']} |"
        if "error" in row:
            lines.append(f"{prefix} failed: {row['error']} | | | | |")
        else:
            lines.append(
                f"{prefix} {row['trainable_m']:.1f} | {row['median_s']:.2f} | {row['min_s']:.2f} "
                f"| {row['samples_per_s']:.3f} | {row['peak_mib']:.0f} |"
            )
    ratios = speedups(rows) or ["- no configuration measured both ways"]
    title = "Cache speed-up (samples/s with the cache ÷ through the AST):"
    return header + "\n".join(lines) + f"\n\n{title}\n\n" + "\n".join(ratios)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full", help="tiny: smoke test of the script")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS), help="attention/audio path")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per combination (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before measuring")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="bf16: autocast of forward and loss")
    parser.add_argument("--gradient-checkpointing", nargs="+", choices=CHECKPOINTING, default=["off"])
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--text-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        parser.error("--steps and --batch-sizes must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    rows = []
    for batch_size in args.batch_sizes:
        for checkpointing in args.gradient_checkpointing:
            for config in args.configs:
                job = {
                    "size": args.size, "batch_size": batch_size, "config": config, "checkpointing": checkpointing,
                    "device": args.device, "dtype": args.dtype, "steps": args.steps, "warmup": args.warmup,
                    "num_frames": args.num_frames, "text_length": args.text_length, "threads": args.threads,
                }
                rows.append(run_job(job))
                summary = rows[-1].get("error") or f"{rows[-1]['samples_per_s']:.3f} samples/s"
                print(f"done: batch {batch_size} {config} checkpointing {checkpointing}: {summary}",
                      file=sys.stderr, flush=True)
    print(markdown_table(rows, args))


if __name__ == "__main__":
    main()
