"""Throughput of AvigateProcessor on one core, against a naive PyAV + PIL + ASTFeatureExtractor loader.

Clips: 10 s, 320x240, 30 fps h264 with a 44.1 kHz stereo aac sound track (written with PyAV into a temporary
folder). Each pipeline turns a clip and a caption into 12 frames of 224x224 and a [1024, 128] fbank. Both run in
this process on the same files; the figures are medians over clips and repeats. "Per core" uses the CPU time of the
process (all its threads), which a busy shared machine disturbs far less than wall time; both are printed.

    python benchmarks/bench_processor.py --clips 4 --repeats 3
"""

import os


# One core: set before numpy/torch start their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import ASTFeatureExtractor, CLIPImageProcessorPil  # noqa: E402
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # noqa: E402

from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, sample_frame_indices  # noqa: E402
from modeling_avigate.processors.video_io import FrameResizer, _decode_frames, _scan  # noqa: E402
from modeling_avigate.vocab import write_word_level_clip_vocab  # noqa: E402


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from media import tone, write_test_video  # noqa: E402


CAPTION = "a man sings with music in a red car"


def naive(path: str, extractor: ASTFeatureExtractor, tokenizer) -> dict[str, np.ndarray]:
    """What a first loader looks like: every frame to PIL, PIL resize and crop, AST's extractor on the track."""
    with av.open(path) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    with av.open(path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        waveform = np.concatenate(
            [out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        )
    frames = []
    for image in images:
        width, height = image.size
        scale = 224 / min(width, height)
        resized = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
        left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
        frames.append(np.asarray(resized.crop((left, top, left + 224, top + 224))))
    chosen = np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, 12).astype(int)])
    pixels = (chosen / 255.0 - np.asarray(OPENAI_CLIP_MEAN)) / np.asarray(OPENAI_CLIP_STD)
    fbank = extractor(waveform, sampling_rate=16000, return_tensors="np")["input_values"]
    return {"pixel_values": pixels, "input_values": fbank, "input_ids": tokenizer([CAPTION])["input_ids"]}


def stages(path: str, processor: AvigateProcessor) -> dict[str, float]:
    """CPU seconds per stage of the processor's own path (the same calls `read_video` and `process_video` make)."""
    timings = {}
    start = time.process_time()
    av.open(path).close()  # opening probes the streams
    timings["open"] = time.process_time() - start
    start = time.process_time()
    times, waveform = _scan(path, True, 16000, "mix")
    timings["audio (demux + decode + resample)"] = time.process_time() - start
    start = time.process_time()
    indices = sample_frame_indices(np.sort(times), processor.num_frames)
    frames = _decode_frames(path, np.sort(times)[indices], FrameResizer(224, (224, 224)), 1)
    processor._normalize_frames(frames)
    timings["frames (decode + scale + normalise)"] = time.process_time() - start
    start = time.process_time()
    processor.feature_extractor(waveform, sampling_rate=16000)
    timings["fbank"] = time.process_time() - start
    start = time.process_time()
    processor(text=[CAPTION])
    timings["tokenise"] = time.process_time() - start
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

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
        processor = AvigateProcessor(CLIPImageProcessorPil(), AvigateFeatureExtractor(), tokenizer, num_frames=12)
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

    print(f"\n{'pipeline':40s} {'CPU ms/video':>13s} {'videos/s/core':>14s} {'wall ms/video':>14s}")
    for name in pipelines:
        cpu_median, wall_median = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"{name:40s} {1e3 * cpu_median:13.1f} {1 / cpu_median:14.2f} {1e3 * wall_median:14.1f}")
    speedup = statistics.median(cpu["naive (all frames to PIL + AST FE)"]) / statistics.median(cpu["AvigateProcessor"])
    print(f"speed-up per core: {speedup:.2f}x (target >= 3x)\n")
    print("AvigateProcessor stages (median CPU ms/video; 'audio' and 'frames' each open the file again):")
    for stage, values in breakdown.items():
        print(f"  {stage:38s} {1e3 * statistics.median(values):8.1f}")


if __name__ == "__main__":
    main()
