# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Search latency, memory and two-stage recall of `modeling_avigate.search` on synthetic unit vectors.

Galleries of N videos × T frames × D dims (fp16 frames, fp32 global embeddings, as `VideoIndex` stores them) are
scored with the exact chunked scan (`exact_search`) and with a faiss first stage over the global embeddings plus the
exact multi-grained re-rank (`shortlist` + `rerank_candidates`). Text encoding is not included: queries are given as
embeddings. A "video" here is one index row: a timed segment of a file is the same 12 × D row, so N = 1M measures
an index of 1M segments (docs/search.md gives the bytes per hour of video).

Synthetic data with the structure of CLIP embeddings: videos belong to topics (cos ≈ 0.78 to their topic), frames
scatter around their video (cos ≈ 0.89 to its centre), and each query is a noisy copy of one video's global
embedding (cos ≈ 0.37, like a matching caption). σ = 100, λ = 1.

Usage:

    OMP_NUM_THREADS=1 python benchmarks/bench_search.py                 # N = 1k and 100k
    OMP_NUM_THREADS=1 python benchmarks/bench_search.py --sizes 1000000 --memmap-dir /tmp   # 1M: 12 GB file
    OMP_NUM_THREADS=1 python benchmarks/bench_search.py --sizes 100000 --stages hnsw           # slow to build
"""

import argparse
import json
import os
import platform
import tempfile
import time

import faiss
import numpy as np
import torch

from modeling_avigate.search import build_first_stage, exact_search, rerank_candidates, shortlist
from modeling_avigate.modeling_avigate import pool_video_embeds


LOGIT_SCALE, LSE_TEMPERATURE = 100.0, 1.0
GENERATION_CHUNK = 20_000


def unit(tensor: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(tensor, dim=-1)


def make_gallery(num_videos: int, num_frames: int, dim: int, seed: int,
                 memmap_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fp16 frames `[N, T, D]` and fp32 global embeddings `[N, D]`, generated in chunks so only the fp16 frames
    (and one fp32 chunk) are ever in memory. With `memmap_dir` the frames live in a file there (page cache, not
    process memory), as a disk-backed index would."""
    generator = torch.Generator().manual_seed(seed)
    num_topics = max(8, num_videos // 256)
    topics = unit(torch.randn(num_topics, dim, generator=generator))
    if memmap_dir:
        array = np.lib.format.open_memmap(os.path.join(memmap_dir, f"frames-{num_videos}.npy"), mode="w+",
                                          dtype=np.float16, shape=(num_videos, num_frames, dim))
        frames = torch.from_numpy(array)
    else:
        frames = torch.empty(num_videos, num_frames, dim, dtype=torch.float16)
    globals_ = torch.empty(num_videos, dim)
    mask = torch.ones(GENERATION_CHUNK, num_frames, dtype=torch.bool)
    for start in range(0, num_videos, GENERATION_CHUNK):
        count = min(GENERATION_CHUNK, num_videos - start)
        topic = topics[torch.randint(num_topics, (count,), generator=generator)]
        centres = unit(topic + 0.8 * unit(torch.randn(count, dim, generator=generator)))
        chunk = unit(centres[:, None] + 0.5 * unit(torch.randn(count, num_frames, dim, generator=generator)))
        frames[start : start + count] = chunk.half()
        globals_[start : start + count] = pool_video_embeds(frames[start : start + count].float(), mask[:count])
    return frames, globals_


def make_queries(globals_: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(globals_.shape[0], (count,), generator=generator)
    return unit(globals_[targets] + 2.5 * unit(torch.randn(count, globals_.shape[1], generator=generator)))


def timed(function, repeats: int) -> list[float]:
    """Wall-clock milliseconds of `repeats` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000 * (time.perf_counter() - start))
    return times


def percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def index_bytes(index) -> int:
    with tempfile.NamedTemporaryFile(suffix=".faiss") as handle:
        faiss.write_index(index, handle.name)
        return os.path.getsize(handle.name)


def run_size(num_videos: int, args) -> list[dict]:
    print(f"\n== N = {num_videos:,}: generating gallery", flush=True)
    frames, globals_ = make_gallery(num_videos, args.frames, args.dim, args.seed, args.memmap_dir)
    mask = torch.ones(num_videos, args.frames, dtype=torch.bool)
    # VideoIndex keeps a float32 copy of the frames when it fits in 1 GiB; mirror that policy.
    scan_frames = frames.float() if frames.numel() * 4 <= (1 << 30) else frames
    stored = frames.numel() * 2 + mask.numel() + globals_.numel() * 4 + num_videos
    queries = make_queries(globals_, max(args.queries, 32 * args.batches), args.seed)
    rows = []

    def exact(batch: torch.Tensor):
        return exact_search(batch, scan_frames, mask, globals_, LOGIT_SCALE, LSE_TEMPERATURE, args.k)

    # Exact reference top-k for the recall queries (batches of 32: the cheapest way to get many).
    recall_queries = queries[: args.recall_queries]
    start = time.perf_counter()
    reference = torch.cat([exact(recall_queries[i : i + 32])[1] for i in range(0, len(recall_queries), 32)])
    print(f"   exact reference for {len(recall_queries)} queries: {time.perf_counter() - start:.1f} s", flush=True)

    scale = 1 if num_videos <= 10_000 else (10 if num_videos <= 200_000 else 100)
    position = iter(range(10**9))
    single = timed(lambda: exact(queries[next(position) % len(queries)][None]), max(3, args.queries // scale))
    batched = timed(lambda: exact(queries[:32]), max(1, args.batches // scale))
    rows.append(dict(N=num_videos, method="exact scan", single=percentiles(single), batch=percentiles(batched),
                     recall=1.0, bytes_per_video=stored / num_videos, build_s=0.0))
    print(f"   exact: {rows[-1]}", flush=True)

    stages = args.stages or (["flat"] if num_videos <= 10_000 else ["pq", "ivf"])
    for kind in stages:
        start = time.perf_counter()
        first_stage = build_first_stage(globals_.numpy(), kind)
        build_seconds = time.perf_counter() - start
        nprobe = args.nprobe if kind == "ivf" else None

        for size in args.shortlist:

            def two_stage(batch: torch.Tensor):
                candidates = shortlist(first_stage, batch, min(size, num_videos), nprobe=nprobe)
                return rerank_candidates(batch, candidates, scan_frames, mask, globals_, LOGIT_SCALE,
                                         LSE_TEMPERATURE, args.k)

            found = torch.cat([two_stage(recall_queries[i : i + 32])[1] for i in range(0, len(recall_queries), 32)])
            recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(found, reference)])
            position = iter(range(10**9))
            single = timed(lambda: two_stage(queries[next(position) % len(queries)][None]), args.queries)
            batched = timed(lambda: two_stage(queries[:32]), args.batches)
            label = f"{kind} → M={size}" + (f" (nlist={first_stage.nlist}, nprobe={nprobe})" if nprobe else "")
            label += f" (refine ×{first_stage.k_factor:g})" if kind == "pq" else ""
            rows.append(dict(N=num_videos, method=f"two-stage {label}", single=percentiles(single),
                             batch=percentiles(batched), recall=float(recall),
                             bytes_per_video=(stored + index_bytes(first_stage)) / num_videos, build_s=build_seconds))
            print(f"   {kind}: {rows[-1]}", flush=True)
        del first_stage
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| N | method | single query p50 / p95 (ms) | batch of 32 p50 / p95 (ms) | per query in batch (ms) "
        "| recall@10 vs exact | memory per video | first-stage build (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['N']:,} | {row['method']} | {row['single'][0]:.2f} / {row['single'][1]:.2f} | "
            f"{row['batch'][0]:.1f} / {row['batch'][1]:.1f} | {row['batch'][0] / 32:.2f} | {row['recall']:.3f} | "
            f"{row['bytes_per_video'] / 1024:.1f} KiB | {row['build_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000],
                        help="gallery sizes (1000000 needs about 16 GB of RAM, or --memmap-dir)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--shortlist", type=int, nargs="+", default=[64, 128],
                        help="first-stage candidates M per query (one row each)")
    parser.add_argument("--stages", nargs="+", choices=["flat", "pq", "hnsw", "ivf"],
                        help="first stages to time (default: flat up to 10k videos, else pq and ivf; hnsw builds "
                             "slowly on a small CPU)")
    parser.add_argument("--nprobe", type=int, default=32, help="IVF lists visited per query")
    parser.add_argument("--queries", type=int, default=100, help="timed single queries (fewer for exact at scale)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches of 32 queries")
    parser.add_argument("--recall-queries", type=int, default=128, help="queries for recall@10 against exact")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memmap-dir", help="keep the fp16 frames in a memory-mapped file in this folder (for 1M "
                        "videos on a machine with little free RAM)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, faiss threads {faiss.omp_get_max_threads()}")
    rows = []
    for size in args.sizes:
        rows.extend(run_size(size, args))
    print()
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
