# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Moment search in a long file: is the right segment, by its time, returned for a caption of what happens in it?

The benchmark's clips (one caption each, e.g. the synthetic test split) are concatenated, frames and sound, into one
long mp4 with known times: every pass over the clips is a new random order, no clip next to itself, until the file
is `--hours` long (so a clip occurs several times). The file is indexed as `avigate index` does (`build_sharded`, one
process, decoding in this process) at each `--settings` (segment length and stride in seconds; the default is the
clip length without and with half-overlapping segments), and every clip's caption is searched among all segments.

A returned segment is a hit when it overlaps one occurrence of the caption's clip by at least half of the clip's
length. Because the clips repeat, a caption has one right span per occurrence and a hit on any of them counts (the
segment of another clip with the same picture and a different sound, an audio twin, does not count). Reported: R@1
and R@5 (a hit among the first 1 / 5 segments) and the median rank of the first hit, per clip kind, twice: over
every segment, and with each moment counted once. The repetition fills the ranking with copies (a wrong clip that
outranks the right one does so with all its ~10 copies, so R@5 over every segment is close to R@1); the second table
leaves out a segment whose content (the clips it covers, at the same offsets) already ranked higher, which is what a
file without repeats would give. Also: index time (wall and CPU of this process) and single-query latency
(`VideoIndex.search(caption, k=5, per_file=False)`: text encoding plus the exact scan), with the load average. The
same clips indexed as whole files through the same code give the clip-level figures, so the tables show what cutting
a long file into segments costs.

The long file is re-encoded (h264 at CRF 18, AAC 64 kb/s): segment frames and sound differ slightly from the clips'
own. A clip without a sound track becomes silence in the long file, so its segments have sound (`has_audio`) where
the clip had none.

    python benchmarks/bench_moment_search.py --model outputs/demo/avigate-synthetic --data-dir outputs/demo/data
    python benchmarks/bench_moment_search.py ... --hours 1 --settings 2:2 2:1 10:10
"""

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from fractions import Fraction

import av
import numpy as np
import torch

from modeling_avigate import AvigateModel
from modeling_avigate.data import load_benchmark
from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.processors import AvigateProcessor
from modeling_avigate.retrieval_metrics import metrics_from_ranks
from modeling_avigate.search import VideoIndex, build_sharded


SAMPLE_RATE = 16000
HIT_OVERLAP = 0.5  # share of the clip's span a returned segment must cover


def clip_order(num_clips: int, total: int, rng: np.random.Generator) -> list[int]:
    """`total` clip numbers: random permutations of all clips one after another, each drawn again while it would put
    a clip next to itself at the seam."""
    order: list[int] = []
    while len(order) < total:
        permutation = rng.permutation(num_clips).tolist()
        while num_clips > 1 and order and permutation[0] == order[-1]:
            permutation = rng.permutation(num_clips).tolist()
        order.extend(permutation)
    return order[:total]


def read_clip(path: str, fps: Fraction, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip's RGB frames `[num_frames, H, W, 3]` and its sound as mono 16 kHz float samples, exactly
    `num_frames / fps` seconds long (cut or padded with silence; silence for a clip without sound)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        if Fraction(stream.average_rate) != fps:
            raise ValueError(f"{path}: {stream.average_rate} frames/s, the first clip has {fps}")
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        sound = []
        if container.streams.audio:
            container.seek(0)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                sound.extend(chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(frame))
            sound.extend(chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(None))
    if len(frames) != num_frames:
        raise ValueError(f"{path}: {len(frames)} frames, the first clip has {num_frames}")
    samples = int(round(num_frames / fps * SAMPLE_RATE))
    waveform = np.concatenate(sound) if sound else np.zeros(0, dtype=np.float32)
    return frames, np.pad(waveform[:samples], (0, max(samples - waveform.size, 0))).astype(np.float32)


def clip_format(path: str) -> tuple[Fraction, int]:
    """Frame rate and frame count of a clip: every clip must have the first one's, so that spans are exact."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return Fraction(stream.average_rate), sum(1 for _ in container.decode(stream))


def write_long_file(path: str, clips: list[str], order: list[int], fps: Fraction, num_frames: int) -> None:
    """Write `clips` (each `num_frames` at `fps`) in `order` one after another into the mp4 `path` (h264 + mono AAC):
    clip `i` of the order spans `[i, i + 1) × num_frames / fps` seconds."""
    decoded = {}
    with av.open(path, mode="w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        sound.bit_rate = 64000
        resampler = av.AudioResampler(format=sound.codec_context.format, layout="mono", rate=SAMPLE_RATE,
                                      frame_size=sound.codec_context.frame_size)
        frame_count = sample_count = 0
        for clip in order:
            if clip not in decoded:
                decoded[clip] = read_clip(clips[clip], fps, num_frames)
            frames, waveform = decoded[clip]
            if frame_count == 0:
                video.height, video.width = frames.shape[1:3]
                video.pix_fmt = "yuv420p"
            for pixels in frames:
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts, frame.time_base = frame_count, 1 / fps
                frame_count += 1
                container.mux(video.encode(frame))
            chunk = av.AudioFrame.from_ndarray(waveform[None], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, sample_count
            sample_count += waveform.size
            for resampled in resampler.resample(chunk):
                container.mux(sound.encode(resampled))
        for resampled in resampler.resample(None):
            container.mux(sound.encode(resampled))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))


def place_clips(path: str, clips: list[str], hours: float, rng: np.random.Generator) -> tuple[list[int], float]:
    """Write the long file of `clips` ([`clip_order`], [`write_long_file`]) at `path`: the order and the clip length."""
    fps, num_frames = clip_format(clips[0])
    length = float(num_frames / fps)
    order = clip_order(len(clips), max(int(round(3600 * hours / length)), 2), rng)
    started = time.perf_counter()
    write_long_file(path, clips, order, fps, num_frames)
    repeats = sorted(Counter(Counter(order).values()))
    print(f"{len(clips)} clips of {length:g} s, {len(order)} placed ({len(order) * length / 60:.1f} minutes; each clip "
          f"{' or '.join(f'{count}×' for count in repeats)}) into one file in {time.perf_counter() - started:.1f} s")
    return order, length


def occurrence_spans(order: list[int], num_clips: int, length: float) -> list[np.ndarray]:
    """`[occurrences, 2]` start and end times of each clip in the long file."""
    spans = defaultdict(list)
    for slot, clip in enumerate(order):
        spans[clip].append((slot * length, (slot + 1) * length))
    return [np.asarray(spans[clip]).reshape(-1, 2) for clip in range(num_clips)]


def segment_hits(index: VideoIndex, spans: list[np.ndarray], length: float) -> torch.Tensor:
    """`[captions, segments]` True where the segment covers at least `HIT_OVERLAP` of one occurrence of the caption's
    clip (`spans[q]`: `[occurrences, 2]` start and end times of caption `q`'s clip)."""
    starts = torch.tensor([entry["start"] for entry in index.entries], dtype=torch.float64)
    ends = torch.tensor([entry["end"] for entry in index.entries], dtype=torch.float64)
    rows = []
    for occurrences in spans:
        occurrences = torch.as_tensor(occurrences, dtype=torch.float64)
        overlap = (torch.minimum(ends[:, None], occurrences[None, :, 1])
                   - torch.maximum(starts[:, None], occurrences[None, :, 0])).clamp(min=0)
        rows.append((overlap >= HIT_OVERLAP * length - 1e-6).any(dim=1))
    return torch.stack(rows)


def segment_contents(index: VideoIndex, order: list[int], length: float) -> list[tuple]:
    """What each segment shows: the `(clip, from, to)` pieces of the clips it covers, times within each clip. Two
    segments with the same content are copies of one moment, made by the repetition of the clips."""
    contents = []
    for entry in index.entries:
        start, end = entry["start"], entry["end"]
        first, last = int(start // length + 1e-6), min(int(np.ceil(end / length - 1e-6)), len(order))
        contents.append(tuple((order[slot], round(max(start - slot * length, 0.0), 3),
                               round(min(end - slot * length, length), 3)) for slot in range(first, last)))
    return contents


def first_hit_ranks(index: VideoIndex, text_embeds: torch.Tensor, hits: torch.Tensor,
                    contents: list[tuple] | None = None) -> np.ndarray:
    """1-based rank of each caption's first hit (`hits`: `[captions, segments]`) when all segments are ranked; with
    `contents`, every segment whose content ranked higher already is left out (each moment counted once)."""
    _, positions = index.search_embeddings(text_embeds, k=len(index), exact=True)
    if contents is None:
        return (torch.gather(hits, 1, positions).int().argmax(dim=1) + 1).numpy()
    ranks = []
    for query, ranking in enumerate(positions.tolist()):
        seen = set()
        for position in ranking:
            if hits[query, position]:
                ranks.append(len(seen) + 1)
                break
            seen.add(contents[position])
    return np.asarray(ranks)


def recall_table(ranks: np.ndarray, kinds: list[str]) -> dict[str, tuple[float, float, float, int]]:
    """`{kind: (R@1 %, R@5 %, median rank, captions)}`, with `all` first."""
    kinds = np.asarray(kinds)
    groups = {"all": np.ones(len(ranks), dtype=bool), **{kind: kinds == kind for kind in sorted(set(kinds))}}
    metrics = {name: metrics_from_ranks(ranks[rows]) for name, rows in groups.items()}
    return {name: (metrics[name]["R@1"], metrics[name]["R@5"], metrics[name]["MdR"], int(rows.sum()))
            for name, rows in groups.items()}


def query_latency(index: VideoIndex, captions: list[str]) -> tuple[float, float]:
    """p50 and p95 in ms of one caption at a time: text encoding and the scan of every segment for the top 5."""
    times = []
    for caption in captions:
        start = time.perf_counter()
        index.search(caption, k=5, per_file=False)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def timed_build(model, processor, videos, folder: str, options: EmbeddingOptions) -> tuple[VideoIndex, float, float]:
    """The index `avigate index` would write (one process), with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    index = build_sharded(model, processor, videos, folder, options)
    return index, time.perf_counter() - wall, time.process_time() - cpu


def print_table(rows: dict[str, dict[str, tuple[float, float, float, int]]]) -> None:
    kinds = list(next(iter(rows.values())))
    print("| setting | " + " | ".join(f"{kind} R@1 / R@5 / MdR" for kind in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, table in rows.items():
        cells = [f"{r1:.1f} / {r5:.1f} / {median:g}" for r1, r5, median, _ in table.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("captions per kind: " + ", ".join(f"{kind} {table[3]}" for kind, table in
                                            next(iter(rows.values())).items()))


def parse_setting(text: str) -> tuple[float, float]:
    segment, _, stride = text.partition(":")
    try:
        return float(segment), float(stride or segment)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEGMENT:STRIDE in seconds, e.g. 2:1") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (its processor is used too)")
    parser.add_argument("--data-dir", required=True, help="the benchmark's folder")
    parser.add_argument("--benchmark", default="synthetic")
    parser.add_argument("--split", default="test")
    parser.add_argument("--hours", type=float, default=1.0, help="length of the long file (default 1)")
    parser.add_argument("--settings", type=parse_setting, nargs="+",
                        help="SEGMENT:STRIDE seconds per index (default: the clip length, without and with half "
                             "overlap)")
    parser.add_argument("--max-clips", type=int, help="only the first N clips of the split")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per forward pass (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip order")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    processor = AvigateProcessor.from_pretrained(args.model)
    model = AvigateModel.from_pretrained(args.model).eval()
    videos = load_benchmark(args.benchmark, args.data_dir, args.split, view="videos")
    if args.max_clips:
        videos = videos.select(range(min(args.max_clips, len(videos))))
    clips, kinds = list(videos["video"]), list(videos["kind"])
    captions = [captions[0] for captions in videos["captions"]]

    with tempfile.TemporaryDirectory() as work:
        long_file = os.path.join(work, "long", "long.mp4")
        os.makedirs(os.path.dirname(long_file))
        order, length = place_clips(long_file, clips, args.hours, np.random.default_rng(args.seed))
        spans = occurrence_spans(order, len(clips), length)
        results, distinct, timings = {}, {}, []
        whole, _, _ = timed_build(model, processor, clips, os.path.join(work, "clips.avigate"),
                                  EmbeddingOptions(batch_size=args.batch_size, progress=False))
        text_embeds = whole.encode_text(captions)
        # One entry per clip file: the only hit is the caption's own clip.
        own = torch.tensor([[path == os.path.abspath(clip) for path in whole.paths] for clip in clips])
        results[f"whole clips ({len(whole)} files)"] = recall_table(first_hit_ranks(whole, text_embeds, own), kinds)
        for segment, stride in args.settings or [(length, length), (length, length / 2)]:
            load = os.getloadavg()
            options = EmbeddingOptions(batch_size=args.batch_size, progress=True, segment_seconds=segment,
                                       stride_seconds=stride)
            index, wall, cpu = timed_build(model, processor, [long_file],
                                           os.path.join(work, f"long-{segment:g}-{stride:g}.avigate"), options)
            hits = segment_hits(index, spans, length)
            name = f"{segment:g} s segments every {stride:g} s ({len(index)} segments)"
            results[name] = recall_table(first_hit_ranks(index, text_embeds, hits), kinds)
            distinct[name] = recall_table(
                first_hit_ranks(index, text_embeds, hits, segment_contents(index, order, length)), kinds)
            p50, p95 = query_latency(index, captions)
            timings.append((name, wall, cpu, p50, p95, load, os.getloadavg()))
    print("\nEvery segment ranked (copies of a moment included):")
    print_table(results)
    print("\nEach moment counted once (a copy of a segment that ranked higher is left out):")
    print_table(distinct)
    print("\n| setting | index wall (s) | index CPU (s) | query p50 / p95 (ms) | load average before → after |")
    print("|---|---:|---:|---:|---|")
    for name, wall, cpu, p50, p95, before, after in timings:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {p50:.1f} / {p95:.1f} | {before[0]:.2f} → {after[0]:.2f} |")


if __name__ == "__main__":
    main()
