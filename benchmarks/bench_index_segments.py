# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Indexing cost of a long file by segments: `VideoIndex.build` with the full-size random-init model, per minute of
video, with the CPU seconds of each stage.

One process does everything (decoding in it too, `num_workers=0`), so its CPU time is the whole job's; with an idle
machine and `--threads` equal to its cores, wall time is about CPU time divided by the cores. Stage CPU times come from
`bench_embed.py`'s forward hooks (AST, ViT, fusion), a timer around the fbank extractor and one around each step of
`decode_segments` (frames, sound and poster frames of the one pass over the file).

    ffmpeg -stream_loop 59 -i bigbuckbunny.mp4 -c copy long.mp4      # 317.5 s of 720p h264 + 5.1 AAC
    python benchmarks/bench_index_segments.py long.mp4 --segment-seconds 10
"""

import argparse
import os
import resource
import tempfile
import time
from collections import defaultdict

import torch

import modeling_avigate.embedding as embedding
from bench_embed import build_model_and_processor, time_calls, time_model_stages
from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.processors import AvigateFeatureExtractor
from modeling_avigate.search import VideoIndex


def timed_decoding(seconds: dict):
    """`decode_segments` that adds the CPU time of producing each segment to `seconds["decode"]`."""
    real = embedding.decode_segments

    def decode(path, settings, pieces=None):
        segments = real(path, settings, pieces)
        while True:
            start = time.process_time()
            segment = next(segments, None)
            seconds["decode (frames, sound, posters)"] += time.process_time() - start
            if segment is None:
                return
            yield segment

    return decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="a long video file")
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per forward pass (default 8, as `avigate index`)")
    parser.add_argument("--encoder-precision", default="fp32", choices=("fp32", "int8", "int8-audio"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = build_model_and_processor("full", tempfile.mkdtemp())
    seconds: dict[str, float] = defaultdict(float)
    time_model_stages(seconds, model)
    time_calls(seconds, "fbank", AvigateFeatureExtractor, "__call__")
    embedding.decode_segments = timed_decoding(seconds)
    options = EmbeddingOptions(batch_size=args.batch_size, progress=False, num_workers=0,
                               segment_seconds=args.segment_seconds,
                               encoder_precision=args.encoder_precision)
    load_before, cpu, wall = os.getloadavg(), time.process_time(), time.time()
    index = VideoIndex.build(model, processor, [os.path.abspath(args.video)], options)
    cpu, wall = time.process_time() - cpu, time.time() - wall
    minutes = index.entries[0]["duration"] / 60
    print(f"{len(index)} segments of {args.segment_seconds:g} s over {60 * minutes:.1f} s ({args.encoder_precision}, "
          f"{args.threads} threads): CPU {cpu:.1f} s, wall {wall:.1f} s; per minute of video: CPU {cpu / minutes:.1f} "
          f"s, wall {wall / minutes:.1f} s")
    print("CPU s per minute of video by stage:", {name: round(value / minutes, 2) for name, value in seconds.items()})
    # ru_maxrss is in KiB on Linux: the process's peak, model and imports included.
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (model, imports and index)")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
