"""Everything worth measuring on one lent GPU, in one call of at most 10 minutes, as a Markdown file.

Three sections, each in its own subprocess with its share of the time budget, so one that fails or overruns still
leaves the others' tables (the file is rewritten after every section):

- **train**: the full training step of `examples/train.py` (forward under bf16 autocast, contrastive loss, backward,
  clipping, AdamW; AST and CLIP embeddings frozen) at each batch size, through the AST or from cached AST states,
  with and without gradient checkpointing: median step time, samples/s, peak `torch.cuda.max_memory_allocated`, and
  model FLOPs utilisation (FLOPs of one step without checkpointing, counted by `torch.utils.flop_counter`, over
  step time × the card's dense bf16 peak);
- **embed**: `get_video_features` on random inputs at fp32 and bf16 (`prepare_for_inference`), and end to end
  (`VideoIndex.build` over generated mp4 files, decoding in DataLoader workers);
- **search**: exact multi-grained search (`exact_search`) over a gallery of random unit frames kept on the GPU
  (1M videos × 12 frames × 512, fp16): latency of one query and of a batch of 32.

A batch that does not fit in memory is reported as such at once and the larger ones of that row are skipped; a
step that would overrun its section's time is skipped with a message. The `dry-run` preset runs every step on the
CPU with the tiny model and small sizes (CI checks the script with it).

    python benchmarks/bench_gpu.py --out OUT                 # preset gpu (what benchmarks/gpu.sh runs)
    python benchmarks/bench_gpu.py --preset dry-run --out OUT
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone


PRESETS = {
    "gpu": dict(size="full", device="cuda", batch_sizes=[32, 64, 128], warmup=2, steps=5, embed_batch=32,
                clips=32, clip_seconds=5.0, gallery=1_000_000, score_chunk=1 << 28, budget_s=540),
    "dry-run": dict(size="tiny", device="cpu", batch_sizes=[2, 4], warmup=1, steps=1, embed_batch=2, clips=2,
                    clip_seconds=1.0, gallery=2_000, score_chunk=1 << 22, budget_s=300),
}
# Share of the budget each section may use; the rest of a section's share passes to the next.
SECTION_SHARES = {"train": 0.55, "embed": 0.25, "search": 0.20}
# Dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, matched against torch's device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
NUM_FRAMES, TEXT_LENGTH, SEARCH_DIM = 12, 32, 512


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def peak_flops(device, override: float | None) -> float | None:
    import torch

    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


# -- train ----------------------------------------------------------------------------------------------------------


def training_step(model, optimizer, inputs: dict, audio_states, device) -> None:
    """One step as `examples/train.py` takes it; `audio_states` (fp16, host) replaces the AST when given."""
    import torch

    if audio_states is not None:
        inputs = {**inputs, "audio_hidden_states": audio_states.to(device, non_blocking=True)}
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = model(**inputs, return_loss=True).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure_training(model, optimizer, batch_size: int, audio: str, preset: dict, device) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench_model import build_inputs

    inputs = {name: tensor.to(device) for name, tensor in
              build_inputs(model.config, batch_size, NUM_FRAMES, TEXT_LENGTH).items()}
    audio_states = None
    if audio == "cache":
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            audio_states = model.get_audio_hidden_states(inputs.pop("input_values")).to("cpu", torch.float16)
    reset_peak_memory(device)
    with FlopCounterMode(display=False) as counter:
        training_step(model, optimizer, inputs, audio_states, device)
    times = []
    for step in range(preset["warmup"] + preset["steps"]):
        synchronize(device)
        start = time.perf_counter()
        training_step(model, optimizer, inputs, audio_states, device)
        synchronize(device)
        if step >= preset["warmup"]:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"median_s": median, "samples_per_s": batch_size / median, "peak_mib": peak_memory_mib(device),
            "flops": counter.get_total_flops()}


def train_section(preset: dict, device, deadline: float, peak: float | None) -> str:
    import torch

    from bench_train import build_model

    torch.manual_seed(0)
    model, optimizer = build_model(preset["size"], "sdpa", "off", device)
    rows, flops_per_sample, last_seconds = [], {}, 0.0
    for checkpointing in ("off", "on"):
        if checkpointing == "on":
            model.activation_checkpointing_enable()
        for audio in ("ast", "cache"):
            for batch_size in preset["batch_sizes"]:
                prefix = f"| {batch_size} | {audio} | {checkpointing} |"
                if time.monotonic() + 2 * last_seconds > deadline:
                    rows.append(f"{prefix} skipped: would overrun this section's time | | | | |")
                    print(f"train: batch {batch_size} {audio} checkpointing {checkpointing}: skipped, out of time",
                          file=sys.stderr, flush=True)
                    continue
                started = time.monotonic()
                try:
                    row = measure_training(model, optimizer, batch_size, audio, preset, device)
                except (torch.OutOfMemoryError, RuntimeError) as error:
                    if not is_out_of_memory(error):
                        raise
                    optimizer.zero_grad(set_to_none=True)
                    reset_peak_memory(device)
                    message = f"does not fit: out of memory at batch {batch_size}"
                    print(f"train: {audio} checkpointing {checkpointing}: {message}", file=sys.stderr, flush=True)
                    rows.append(f"{prefix} {message} (larger batches skipped) | | | | |")
                    break
                last_seconds = time.monotonic() - started
                # Checkpointing recomputes forwards: model FLOPs are those of the step without it.
                if checkpointing == "off":
                    flops_per_sample[audio] = row["flops"] / batch_size
                model_flops = flops_per_sample.get(audio, row["flops"] / batch_size) * batch_size
                mfu = f"{100 * model_flops / row['median_s'] / peak:.1f} %" if peak else "n/a"
                rows.append(f"{prefix} {row['median_s']:.3f} | {row['samples_per_s']:.1f} | {row['peak_mib']:.0f} "
                            f"| {model_flops / 1e12:.3g} | {mfu} |")
                print(f"train: batch {batch_size} {audio} checkpointing {checkpointing}: {row['median_s']:.3f} s",
                      file=sys.stderr, flush=True)
    memory = "peak CUDA allocated" if device.type == "cuda" else "peak RSS"
    return (f"### Training step\n\n{preset['size']} model, {NUM_FRAMES} frames, text length {TEXT_LENGTH}, bf16 "
            f"autocast, sdpa; median of {preset['steps']} steps after {preset['warmup']} warm-up.\n\n"
            f"| batch | audio | grad. checkpointing | median step (s) | samples/s | {memory} (MiB) | model TFLOP/step "
            f"| MFU |\n|---:|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows))


# -- embed ----------------------------------------------------------------------------------------------------------


def embed_section(preset: dict, device, deadline: float, peak: float | None) -> str:
    import torch

    from bench_embed import build_model_and_processor, write_clips
    from bench_model import build_inputs
    from modeling_avigate.embedding import EmbeddingOptions
    from modeling_avigate.fast_inference import prepare_for_inference
    from modeling_avigate.search import VideoIndex

    lines = []
    with tempfile.TemporaryDirectory() as folder:
        model, processor = build_model_and_processor(preset["size"], folder)
        model.to(device)
        inputs = build_inputs(model.config, preset["embed_batch"], NUM_FRAMES, TEXT_LENGTH)
        video_inputs = {name: inputs[name].to(device) for name in ("pixel_values", "video_mask", "input_values",
                                                                   "has_audio")}
        for precision in ("fp32", "bf16"):
            fast = prepare_for_inference(model, precision)
            reset_peak_memory(device)
            times = []
            with torch.no_grad():
                for _ in range(4):
                    synchronize(device)
                    start = time.perf_counter()
                    fast.get_video_features(**video_inputs)
                    synchronize(device)
                    times.append(time.perf_counter() - start)
            rate = preset["embed_batch"] / statistics.median(times[1:])
            lines.append(f"| model only, random inputs, batch {preset['embed_batch']} | {precision} | {rate:.1f} | "
                         f"{peak_memory_mib(device):.0f} |")
            print(f"embed: model only {precision}: {rate:.1f} videos/s", file=sys.stderr, flush=True)
            del fast
        if time.monotonic() + 60 > deadline:
            lines.append("| end to end | bf16 | skipped: would overrun this section's time | |")
        else:
            paths = write_clips(folder, preset["clips"], preset["size"], seconds=preset["clip_seconds"])
            workers = min(16, os.cpu_count() or 1) if device.type == "cuda" else 0
            options = EmbeddingOptions(batch_size=preset["embed_batch"], num_workers=workers, progress=False,
                                       encoder_precision="bf16")
            VideoIndex.build(model, processor, paths[:2], options)
            reset_peak_memory(device)
            start = time.perf_counter()
            VideoIndex.build(model, processor, paths, options)
            rate = len(paths) / (time.perf_counter() - start)
            lines.append(f"| end to end: {len(paths)} mp4 files of {preset['clip_seconds']:g} s (320x240, h264 + aac),"
                         f" {workers} decoding workers | bf16 | {rate:.1f} | {peak_memory_mib(device):.0f} |")
            print(f"embed: end to end: {rate:.1f} videos/s", file=sys.stderr, flush=True)
    memory = "peak CUDA allocated" if device.type == "cuda" else "peak RSS"
    return (f"### Embedding throughput\n\n{preset['size']} model, {NUM_FRAMES} frames per video with sound.\n\n"
            f"| what | encoder precision | videos/s | {memory} (MiB) |\n|---|---|---:|---:|\n" + "\n".join(lines))


# -- search ---------------------------------------------------------------------------------------------------------


def search_section(preset: dict, device, deadline: float, peak: float | None) -> str:
    import torch

    from modeling_avigate.search import exact_search
    from modeling_avigate.modeling_avigate import pool_video_embeds

    size, chunk = preset["gallery"], 50_000
    generator = torch.Generator(device=device).manual_seed(0)
    frames = torch.empty(size, NUM_FRAMES, SEARCH_DIM, dtype=torch.float16, device=device)
    video_embeds = torch.empty(size, SEARCH_DIM, device=device)
    mask = torch.ones(size, NUM_FRAMES, dtype=torch.bool, device=device)
    for start in range(0, size, chunk):
        block = torch.randn(min(chunk, size - start), NUM_FRAMES, SEARCH_DIM, device=device, generator=generator)
        block = torch.nn.functional.normalize(block, dim=-1)
        frames[start : start + len(block)] = block.half()
        video_embeds[start : start + len(block)] = pool_video_embeds(block, mask[start : start + len(block)])
    lines = []
    for num_queries, repeats in ((1, 20), (32, 5)):
        queries = torch.nn.functional.normalize(torch.randn(num_queries, SEARCH_DIM, device=device), dim=-1)
        times = []
        for _ in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            exact_search(queries, frames, mask, video_embeds, 100.0, 1.0, k=10, chunk_elements=preset["score_chunk"])
            synchronize(device)
            times.append(time.perf_counter() - start)
        median = statistics.median(times[1:])
        lines.append(f"| {num_queries} | {1e3 * median:.1f} | {1e3 * median / num_queries:.2f} |")
        print(f"search: {num_queries} queries: {1e3 * median:.1f} ms", file=sys.stderr, flush=True)
    return (f"### Search\n\nExact multi-grained search (top 10) over {size:,} random videos × {NUM_FRAMES} frames × "
            f"{SEARCH_DIM} (fp16 frames, fp32 global embeddings) held on the {device.type}; median of the timed "
            f"calls after one warm-up.\n\n| queries per call | latency (ms) | per query (ms) |\n|---:|---:|---:|\n"
            + "\n".join(lines))


SECTIONS = {"train": train_section, "embed": embed_section, "search": search_section}


# -- driver ---------------------------------------------------------------------------------------------------------


def run_section(name: str, args: argparse.Namespace, seconds: float) -> tuple[str, bool]:
    """Run one section in a fresh interpreter with `seconds` to spare: its Markdown, and whether it succeeded (a
    failure becomes a line of the report)."""
    command = [sys.executable, os.path.abspath(__file__), "--preset", args.preset, "--section", name,
               "--seconds", str(seconds)] + (["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else [])
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        message = f"section {name} did not finish within {seconds:.0f} s and was stopped"
        print(f"bench_gpu: {message}", file=sys.stderr, flush=True)
        return f"### {name}\n\n**{message}.**", False
    if completed.returncode != 0:
        message = f"section {name} failed (exit status {completed.returncode}); its error is above"
        print(f"bench_gpu: {message}", file=sys.stderr, flush=True)
        return f"### {name}\n\n**{message}.**", False
    return json.loads(completed.stdout.strip().splitlines()[-1])["markdown"], True


def write_report(path: str, parts: list[str]) -> None:
    """Replace `path` atomically, so a stopped run leaves the previous sections' complete file."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write("\n\n".join(parts) + "\n")
    os.replace(temporary, path)


def device_description(preset: dict) -> str:
    import torch

    if preset["device"] == "cuda":
        properties = torch.cuda.get_device_properties(0)
        return f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB"
    return f"CPU ({os.cpu_count()} cores; dry run with the tiny model)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="gpu")
    parser.add_argument("--dry-run", action="store_const", const="dry-run", dest="preset",
                        help="the dry-run preset: tiny model, CPU, small sizes")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_benchmarks.md ($OUT)")
    parser.add_argument("--sections", nargs="+", choices=tuple(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the card, if not in the built-in list")
    parser.add_argument("--section", choices=tuple(SECTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]

    import torch

    if preset["device"] == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device visible to torch; run with --dry-run for the CPU check")
    device = torch.device(preset["device"])
    if args.section:
        deadline = time.monotonic() + args.seconds
        markdown = SECTIONS[args.section](preset, device, deadline, peak_flops(device, args.peak_tflops))
        print(json.dumps({"markdown": markdown}))
        return 0

    os.makedirs(args.out, exist_ok=True)
    report = os.path.join(args.out, "gpu_benchmarks.md")
    started = time.monotonic()
    parts = [f"## GPU benchmarks ({args.preset})\n\n{device_description(preset)}; torch {torch.__version__}; "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; command: `python benchmarks/bench_gpu.py "
             f"--preset {args.preset}`."]
    write_report(report, parts)
    spare, failed = 0.0, []
    for name in args.sections:
        share = SECTION_SHARES[name] * preset["budget_s"] + spare
        section_start = time.monotonic()
        markdown, succeeded = run_section(name, args, share)
        parts.append(markdown)
        failed += [] if succeeded else [name]
        spare = max(0.0, share - (time.monotonic() - section_start))
        write_report(report, parts)
    print("\n\n".join(parts))
    print(f"\nwrote {report} in {time.monotonic() - started:.0f} s" + (f"; failed: {', '.join(failed)}" if failed
                                                                       else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
