"""Embedding throughput: video files → frame embeddings in memory, for the full-size random-init model at 12 frames.

Methods, measured in the same run, each in its own subprocess (so its peak RSS is its own):

- `naive`: `processor(videos=[path])` then `model.get_video_features`, one video at a time, fp32;
- `index/fp32`: `VideoIndex.build` (the default pipeline: DataLoader + collator, batch 8, in-process decoding);
- `index/int8`, `index/int8-audio`, `index/bf16`: the same with `encoder_precision`
  (`modeling_avigate.fast_inference`; `int8-audio` quantises the AST only);
- `index/int8+1worker`: int8 with one DataLoader worker decoding while the model runs (a second core).

Clips: 10 s, 320x240, 30 fps h264 with a 44.1 kHz stereo aac track, written with PyAV into a temporary folder. Each
worker embeds one clip untimed (warm-up), then all clips. Wall time gives videos/s; CPU time (this process and its
finished DataLoader workers, all threads) is printed too because it is far less disturbed by other jobs on a shared
machine, and with one thread per process it is what an idle machine's wall time would be. Per-stage CPU seconds per
video come from forward hooks (AST: patch embedding → last layer; ViT: the vision tower; fusion: the audio
resampler and the fusion transformer) and a timer around the fbank extractor; "decode + rest" is the end-to-end CPU
time minus those (decoding, frame scaling, collation, copies). The one-off `prepare_for_inference` time (quantising
or casting the encoders) is shown on its own and left out of videos/s and CPU s/video. Stage times are means over the
clips (the index embeds them in batches).
Accuracy: cosine of every real frame embedding to the naive fp32 one.

    python benchmarks/bench_embed.py                      # short: 4 clips per method (about 3 minutes idle)
    python benchmarks/bench_embed.py --full               # 24 clips per method
    python benchmarks/bench_embed.py --size tiny --videos 2   # seconds: a smoke test of the script itself
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict


METHODS = ("naive", "index/fp32", "index/int8", "index/int8-audio", "index/bf16", "index/int8+1worker")
STAGES = ("decode + rest", "fbank", "AST", "ViT", "fusion")
CAPTION_WORDS = "a man sings with music in a red car".split()


def write_clips(folder: str, count: int, size: str, seconds: float | None = None) -> list[str]:
    """`count` 320x240 clips of `seconds` (default 10 s for the full model, 1 s for the tiny one) with a different
    tone and some noise each."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from media import tone, write_test_video

    seconds = seconds or (10.0 if size == "full" else 1.0)
    rate = 44100 if size == "full" else 16000
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        sound = tone(220.0 * (index + 1), seconds, rate, channels=2)
        sound = (sound + 0.05 * rng.standard_normal(sound.shape)).astype(np.float32)
        paths.append(write_test_video(os.path.join(folder, f"clip{index:03d}.mp4"), num_frames=int(30 * seconds),
                                      fps=30, size=(320, 240), audio=sound, sample_rate=rate))
    return paths


def build_model_and_processor(size: str, folder: str):
    """The random-init model (seed 0) and a 12-frame processor; tiny: the test configuration with 32-pixel frames."""
    import torch

    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor
    from modeling_avigate.testing_utils import tiny_config_kwargs
    from modeling_avigate.vocab import write_word_level_clip_vocab

    tokenizer = write_word_level_clip_vocab(CAPTION_WORDS, os.path.join(folder, "tokenizer"))
    if size == "full":
        config, video_processor = AvigateConfig(), AvigateVideoProcessor(num_frames=12)
    else:
        config = AvigateConfig(**tiny_config_kwargs())
        video_processor = AvigateVideoProcessor(size=32, crop_size=32, num_frames=12)
    torch.manual_seed(0)
    model = AvigateModel(config).eval()
    tokenizer.model_max_length = 32
    return model, AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)


def time_calls(seconds: dict, name: str, owner: type, method: str) -> None:
    """Add the CPU time of every call of `owner.method` to `seconds[name]` (patches the class: worker processes only,
    so that the processor's settings and pickling stay untouched)."""
    original = getattr(owner, method)

    def timed(*args, **kwargs):
        start = time.process_time()
        result = original(*args, **kwargs)
        seconds[name] += time.process_time() - start
        return result

    setattr(owner, method, timed)


def time_span(seconds: dict, name: str, first, last) -> None:
    """Add the CPU time from `first`'s forward start to `last`'s forward end to `seconds[name]`.

    The hooks are closures, not bound methods, so the copies `prepare_for_inference` makes keep sharing `seconds`.
    """
    started = []

    def start(module, args):
        started.append(time.process_time())

    def stop(module, args, output):
        seconds[name] += time.process_time() - started.pop()

    first.register_forward_pre_hook(start)
    last.register_forward_hook(stop)


def time_model_stages(seconds: dict, model) -> None:
    """Time the model's stages into `seconds`: the AST encoder, the ViT, and the fusion (resampler and gated layers)."""
    audio = model.audio_model
    time_span(seconds, "AST", audio.embeddings, audio.layers[-1])
    time_span(seconds, "ViT", model.vision_model, model.vision_model)
    time_span(seconds, "fusion", model.audio_resampler, model.audio_resampler)
    time_span(seconds, "fusion", model.fusion, model.fusion)


def embed_naive(model, processor, paths: list[str]):
    import torch

    frames, masks = [], []
    with torch.no_grad():
        for path in paths:
            inputs = processor(videos=[path], return_tensors="pt")
            outputs = model.get_video_features(inputs["pixel_values"], inputs["video_mask"], inputs["input_values"],
                                               inputs["has_audio"])
            frames.append(outputs.last_hidden_state.to(torch.float16))
            masks.append(outputs.video_mask.bool())
    return torch.cat(frames), torch.cat(masks)


def embed_index(model, processor, paths: list[str], precision: str, num_workers: int):
    from modeling_avigate.embedding import EmbeddingOptions
    from modeling_avigate.search import VideoIndex

    options = EmbeddingOptions(batch_size=8, num_workers=num_workers, progress=False, encoder_precision=precision)
    index = VideoIndex.build(model, processor, paths, options)
    if index.failures:
        raise RuntimeError(f"could not embed {index.failures}")
    return index.frame_embeds, index.video_mask


def run_worker(job: dict) -> dict:
    """Embed the clips with one method; return seconds, stage seconds per video, peak RSS and the embeddings' file."""
    import resource

    import torch
    from safetensors.torch import save_file

    from modeling_avigate.fast_inference import prepare_for_inference

    torch.set_num_threads(job["threads"])
    model, processor = build_model_and_processor(job["size"], job["folder"])
    method, paths = job["method"], job["paths"]
    precision = "fp32" if method == "naive" else method.split("/")[1].split("+")[0]
    num_workers = 1 if method.endswith("+1worker") else 0
    seconds: dict[str, float] = defaultdict(float)
    time_model_stages(seconds, model)
    if not num_workers:
        time_calls(seconds, "fbank", type(processor.feature_extractor), "__call__")

    start = time.process_time()
    prepare_for_inference(model, precision)
    setup = time.process_time() - start if precision != "fp32" else 0.0

    def embed(chosen: list[str]):
        if method == "naive":
            return embed_naive(model, processor, chosen)
        return embed_index(model, processor, chosen, precision, num_workers)

    embed(paths[:1])
    seconds.clear()
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    frames, mask = embed(paths)
    # The one-off setup is left out of both: it is CPU work of this process, so it takes about as long in wall time.
    wall, cpu = time.perf_counter() - start_wall - setup, cpu_seconds() - start_cpu - setup
    stages = {name: seconds[name] / len(paths) for name in STAGES[1:]}
    if num_workers:
        stages["fbank"] = None  # computed in the worker process, out of reach of this one's timer
    stages["decode + rest"] = None if num_workers else cpu / len(paths) - sum(stages.values())
    output = os.path.join(job["folder"], method.replace("/", "_") + ".safetensors")
    save_file({"frames": frames.float().contiguous(), "mask": mask.contiguous()}, output)
    return {"seconds": wall, "cpu_seconds": cpu, "setup": setup, "stages": stages, "embeddings": output,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers), all threads."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cosine_to(reference: str, other: str) -> tuple[float, float]:
    """Mean and min cosine between the real frame embeddings of two methods."""
    import torch
    from safetensors.torch import load_file

    first, second = load_file(reference), load_file(other)
    if not torch.equal(first["mask"], second["mask"]):
        raise RuntimeError(f"{other} has other frames than {reference}")
    real = first["mask"]
    cosine = torch.nn.functional.cosine_similarity(first["frames"][real], second["frames"][real], dim=-1)
    return cosine.mean().item(), cosine.min().item()


def format_stage(value: float | None) -> str:
    return "in worker" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4, help="clips per method (default 4)")
    parser.add_argument("--full", action="store_true", help="the full measurement: 24 clips per method")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default 1)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    if "naive" not in args.methods:
        parser.error("--methods must include naive: it is the baseline of every ratio and cosine")
    count = 24 if args.full else args.videos
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}

    with tempfile.TemporaryDirectory() as folder:
        print(f"writing {count} clips (320x240, 30 fps, h264 + aac) ...", flush=True)
        paths = write_clips(folder, count, args.size)
        results = {}
        for method in args.methods:
            job = {"method": method, "paths": paths, "folder": folder, "size": args.size, "threads": args.threads}
            before = load_average()
            completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=environment,
                                       capture_output=True, text=True)
            if completed.returncode != 0:
                raise SystemExit(f"{method} failed:\n{completed.stderr[-3000:]}")
            results[method] = json.loads(completed.stdout.strip().splitlines()[-1])
            results[method]["load"] = f"{before} → {load_average()}"
            print(f"  {method}: {results[method]['seconds']:.1f} s, load average {results[method]['load']}",
                  flush=True)
        cosines = {method: cosine_to(results["naive"]["embeddings"], result["embeddings"])
                   for method, result in results.items()}

    import torch

    naive_rate = count / results["naive"]["seconds"]
    print(f"\n{args.size} model, {count} clips of 12 frames, torch {torch.__version__}, {args.threads} thread(s) per "
          f"process, {os.cpu_count()} CPUs; load average (1/5/15 min) before → after each method shown.\n")
    print("| method | videos/s (wall) | × naive (wall) | CPU s/video | × naive (CPU) | one-off setup (CPU s) | "
          + " | ".join(f"{s} (CPU s/video)" for s in STAGES)
          + " | peak RSS (MiB) | cosine to naive fp32 (mean / min) | load average |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(STAGES) + "---:|---:|---|")
    naive_cpu = results["naive"]["cpu_seconds"] / count
    for method, result in results.items():
        rate, cpu = count / result["seconds"], result["cpu_seconds"] / count
        mean, low = cosines[method]
        stages = " | ".join(format_stage(result["stages"][name]) for name in STAGES)
        print(f"| {method} | {rate:.3f} | {rate / naive_rate:.2f} | {cpu:.2f} | {naive_cpu / cpu:.2f} | "
              f"{result['setup']:.1f} | {stages} | {result['peak_rss_mib']:.0f} | {mean:.5f} / {low:.5f} | "
              f"{result['load']} |")


if __name__ == "__main__":
    main()
