# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Server time of one search on the `avigate serve` page over an 840-video index (the size of `make demo`'s
synthetic benchmark: 600 train + 120 validation + 120 test clips).

What is timed is what the page's footer prints: `SearchPage.query` (text encoding, the exact scan, the score parts
and best frame of the shown results), plus rendering the result grid's HTML. The baseline, timed in the same run and
interleaved, is `VideoIndex.search` for the same query (text encoding and scan only, what `avigate search` does), so
the ratio is the page's own overhead.

Two model/index shapes, both randomly initialised (timing does not depend on training):
- `demo`: the demo's synthetic configuration (`examples/configs/synthetic.yaml`: D = 64, 8 frames, 2-layer text
  tower);
- `paper`: the paper's ViT-B/32 sizes (D = 512, 12 frames, CLIP's 12-layer 512-wide text tower).

`--index DIR` times the same on a real index with the model recorded in it instead (e.g. `outputs/demo/index`, built
from the demo's clips as docs/serve.md shows).

Usage:

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py [--videos 840] [--queries 50]
    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py --index outputs/demo/index
"""

import argparse
import os
import platform
import statistics
import time

import torch
import yaml

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.data.synthetic import synthetic_tokenizer
from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor
from modeling_avigate.search import VideoIndex
from modeling_avigate.serve.app import render_results
from modeling_avigate.serve.search_page import SearchPage


CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "configs", "synthetic-from-scratch.yaml")
QUERIES = ["a red circle moves left with a high beep", "a blue square moves up with a low hum",
           "a green triangle moves right with a rising chirp", "a yellow circle moves down with a click train"]


def build_model(shape: str, tokenizer) -> tuple[AvigateModel, int]:
    """A random model of the demo's or the paper's size and its number of frames per video."""
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if shape == "demo":
        with open(CONFIG) as handle:
            config = yaml.safe_load(handle)
        kwargs = config["model"]
        kwargs["text_config"] = {**kwargs["text_config"], "vocab_size": len(tokenizer), **special}
        num_frames = config["processor"]["num_frames"]
    else:
        kwargs = {"text_config": special}  # CLIP ViT-B/32 text tower (49408-token table, 12 layers, width 512)
        num_frames = 12
    return AvigateModel(AvigateConfig(**kwargs)).eval(), num_frames


def synthetic_index(model: AvigateModel, processor, num_videos: int, num_frames: int) -> VideoIndex:
    frames = torch.nn.functional.normalize(torch.randn(num_videos, num_frames, model.config.projection_dim), dim=-1)
    index = VideoIndex.from_embeddings([f"/videos/clip-{i:04d}.mp4" for i in range(num_videos)], frames,
                                       has_audio=torch.rand(num_videos) < 0.9,
                                       logit_scale=model.get_logit_scale().item())
    return index.attach(model, processor, force=True)


def load_index(path: str) -> VideoIndex:
    """A saved index with the model and processor that built it attached."""
    name = VideoIndex.read_metadata(path)["model"]["name_or_path"]
    model = AvigateModel.from_pretrained(name).eval()
    return VideoIndex.load(path, model=model, processor=AvigateProcessor.from_pretrained(name))


def time_page(label: str, page: SearchPage, num_queries: int) -> None:
    """Print the medians of the page's query + render time and of `VideoIndex.search`, interleaved."""
    for query in QUERIES:  # warm-up
        page.query(query)
    page_times, baseline_times, parts = [], [], {}
    for number in range(num_queries):
        query = QUERIES[number % len(QUERIES)]
        results = []
        page_times.append(milliseconds(lambda: render_results(results.append(page.query(query)) or results[0])))
        baseline_times.append(milliseconds(lambda: page.index.search(query, k=page.page_size)))
        for name, value in results[0].timings.items():
            parts.setdefault(name, []).append(value)
    page_median, baseline_median = statistics.median(page_times), statistics.median(baseline_times)
    p95 = sorted(page_times)[int(0.95 * (len(page_times) - 1))]
    print(f"{label}: page query + render p50 {page_median:.1f} ms, p95 {p95:.1f} ms; VideoIndex.search p50 "
          f"{baseline_median:.1f} ms; ratio {page_median / baseline_median:.2f}; of which "
          + ", ".join(f"{name} {statistics.median(values):.1f} ms" for name, values in parts.items())
          + f"; load average {os.getloadavg()[0]:.2f}")


def milliseconds(function) -> float:
    started = time.perf_counter()
    function()
    return 1000 * (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=840)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--index", help="time a saved index with its own model instead of synthetic ones")
    parser.add_argument("--shapes", nargs="+", default=["demo", "paper"], choices=["demo", "paper"])
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = synthetic_tokenizer()
    tokenizer.model_max_length = 32
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}; load average before: {os.getloadavg()}")
    if args.index:
        index = load_index(args.index)
        time_page(f"{args.index} N={len(index)} T={index.frame_embeds.shape[1]} D={index.frame_embeds.shape[2]}",
                  SearchPage(index), args.queries)
        return
    for shape in args.shapes:
        model, num_frames = build_model(shape, tokenizer)
        video_processor = AvigateVideoProcessor(num_frames=num_frames)
        processor = AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)
        page = SearchPage(synthetic_index(model, processor, args.videos, num_frames))
        time_page(f"{shape:5s} N={args.videos} T={num_frames} D={model.config.projection_dim}", page, args.queries)


if __name__ == "__main__":
    main()
