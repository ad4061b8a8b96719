"""Training-step cost of AvigateModel: forward + backward time and peak memory.

Every (model size, attention implementation, gradient checkpointing) combination runs in its own subprocess, so the
peak resident set size (`ru_maxrss`) belongs to that combination alone. Sizes: `tiny` (the test suite's config) and
`full` (the default `AvigateConfig`: CLIP ViT-B/32 + AST base, random init). All parameters are trainable and the
loss is the adaptive-margin contrastive loss of `forward(..., return_loss=True)`.

Usage:

```bash
python benchmarks/bench_model.py                                   # everything, 5 timed steps after 1 warm-up
python benchmarks/bench_model.py --sizes tiny --repeats 10
python benchmarks/bench_model.py --sizes full --attn sdpa --checkpointing off
```

Prints a markdown table: median and min step time over the timed steps, peak RSS of the process and its growth
during the steps (activations, gradients, temporaries) over the RSS after the model and inputs were built.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


SIZES = ("tiny", "full")
ATTENTION = ("eager", "sdpa")
CHECKPOINTING = ("off", "on")


def current_rss_mib() -> float:
    """Resident set size now (Linux `/proc`), in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_inputs(config, batch_size: int, num_frames: int, text_length: int) -> dict[str, torch.Tensor]:
    """Random matching pairs of the right shapes; every video has all frames and a sound track."""
    text_config, vision_config, audio_config = config.text_config, config.vision_config, config.audio_config
    input_ids = torch.randint(0, text_config.eos_token_id - 1, (batch_size, text_length))
    input_ids[:, -1] = text_config.eos_token_id  # CLIP pools the text at its EOS token
    image_size = vision_config.image_size
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, num_frames, 3, image_size, image_size),
        "video_mask": torch.ones(batch_size, num_frames, dtype=torch.long),
        "input_values": torch.randn(batch_size, audio_config.max_length, audio_config.num_mel_bins),
        "has_audio": torch.ones(batch_size, dtype=torch.bool),
    }


def run_worker(args: argparse.Namespace) -> dict:
    """Build one model, time `warmup + repeats` training steps, return the measurements."""
    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.testing_utils import tiny_config_kwargs

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = AvigateConfig(**tiny_config_kwargs()) if args.size == "tiny" else AvigateConfig()
    model = AvigateModel._from_config(config, attn_implementation=args.attn).train()
    if args.checkpointing == "on":
        model.activation_checkpointing_enable()
    inputs = build_inputs(config, args.batch_size, args.num_frames, args.text_length)
    rss_before = current_rss_mib()

    times = []
    for step in range(args.warmup + args.repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(**inputs, return_loss=True).loss.backward()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = peak_rss_mib()
    return {
        "size": args.size,
        "attn": args.attn,
        "checkpointing": args.checkpointing,
        "parameters_m": sum(parameter.numel() for parameter in model.parameters()) / 1e6,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_mib": peak,
        "step_rss_growth_mib": max(0.0, peak - rss_before),
        "threads": torch.get_num_threads(),
    }


def run_combination(args: argparse.Namespace, size: str, attn: str, checkpointing: str) -> dict:
    """Run one combination in a fresh interpreter so its peak memory is its own."""
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", "--sizes", size, "--attn", attn,
        "--checkpointing", checkpointing, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--batch-size", str(args.batch_size), "--num-frames", str(args.num_frames),
        "--text-length", str(args.text_length), "--threads", str(args.threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{size}/{attn}/checkpointing {checkpointing} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict], args: argparse.Namespace) -> str:
    header = (
        f"Forward + backward of one training step (batch {args.batch_size}, {args.num_frames} frames, text length "
        f"{args.text_length}, fbank 1024 x 128); median and min of {args.repeats} steps after {args.warmup} warm-up; "
        f"torch {torch.__version__}, {rows[0]['threads'] if rows else '?'} threads.\n\n"
        "| size | params (M) | attention | grad. checkpointing | median step (s) | min step (s) | peak RSS (MiB) "
        "| RSS growth in steps (MiB) |\n|---|---:|---|---|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {row['size']} | {row['parameters_m']:.1f} | {row['attn']} | {row['checkpointing']} | {row['median_s']:.3f} "
        f"| {row['min_s']:.3f} | {row['peak_rss_mib']:.0f} | {row['step_rss_growth_mib']:.0f} |"
        for row in rows
    ]
    return header + "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--attn", nargs="+", choices=ATTENTION, default=list(ATTENTION))
    parser.add_argument("--checkpointing", nargs="+", choices=CHECKPOINTING, default=list(CHECKPOINTING))
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per combination (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--text-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        args.size, args.attn, args.checkpointing = args.sizes[0], args.attn[0], args.checkpointing[0]
        print(json.dumps(run_worker(args)))
        return
    rows = []
    for size in args.sizes:
        for attn in args.attn:
            for checkpointing in args.checkpointing:
                rows.append(run_combination(args, size, attn, checkpointing))
                print(f"done: {size} {attn} checkpointing={checkpointing}", file=sys.stderr, flush=True)
    print(markdown_table(rows, args))


if __name__ == "__main__":
    main()
