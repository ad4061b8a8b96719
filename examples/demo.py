#!/usr/bin/env python
"""The main job: train AVIGATE on the synthetic audio-visual benchmark, compare it with its ablations, show the gate.

    python examples/demo.py            # default set, 3 seeds × {learned, closed, open} gates
    python examples/demo.py --quick    # the same path on the small set with one seed (CI)

Steps: generate the benchmark (PyAV mp4 files, seeded), build the frame and audio caches once
(`train.py --cache_only true`), train each gate mode with
`accelerate launch examples/train.py --config examples/configs/synthetic.yaml`, `--jobs` runs at a time, evaluate
the best epoch of every run on the test split (overall and split by clip kind), and print

1. text→video and video→text R@1/R@5/R@10 for AVIGATE (learned gates), visual only (closed) and ungated fusion (open);
2. the mean and spread of the learned gates per clip kind;
3. a PNG of gate values per kind and of the training curves, saved next to the model;
4. two example searches over the test clips with their top-3 results.

The learned model of the first seed is saved with its processor and a model card in `OUTPUT/avigate-synthetic`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from modeling_avigate import AvigateModel, AvigateProcessor
from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
from modeling_avigate.data.synthetic import KINDS
from modeling_avigate.evaluation import embed_texts, evaluate_retrieval
from modeling_avigate.feature_cache import FeatureCache
from modeling_avigate.folders import MARKER_FILE, atomic_folder
from modeling_avigate.hub.model_card import write_model_card
from modeling_avigate.retrieval_metrics import retrieval_metrics
from modeling_avigate.training import BEST_MODEL_KIND, latest_checkpoint


EXAMPLES = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(EXAMPLES, "configs", "synthetic.yaml")
MODES = {"learned": "AVIGATE (gated)", "closed": "visual only", "open": "ungated fusion"}
RECALLS = ("R@1", "R@5", "R@10")
DIRECTIONS = ("text_to_video", "video_to_text")


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--quick", action="store_true", help="small set, one seed, fewer epochs (about 3 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2, or 0 with --quick)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="training runs at a time, one thread each (default: the number of CPUs)")
    return parser.parse_args(argv)


def launch_train(arguments: list[str], log_path: str) -> None:
    """One `accelerate launch examples/train.py --config synthetic.yaml ARGUMENTS` process, logged to `log_path`."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", os.path.join(EXAMPLES, "train.py"), "--config", CONFIG,
        *arguments,
    ]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    # The tiny model's matrices are too small for two intra-op threads to pay off: one thread per process, and
    # as many processes as cores.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log_path, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise SystemExit(f"{' '.join(arguments)} failed; see {log_path}")


def cache_arguments(cache_dir: str, seed: int, frames: bool = True) -> list[str]:
    """Cache folders of one seed's runs: decoded frames are shared (`frames=False` leaves them out: `null` turns a
    cache off); the frozen random AST, hence its cache, is the seed's own."""
    return [
        "--frame_cache", os.path.join(cache_dir, "frames") if frames else "null",
        "--audio_cache", os.path.join(cache_dir, f"audio-{seed}"),
    ]


def build_caches(data_dir: str, cache_dir: str, seeds: list[int], jobs: int, log_dir: str) -> None:
    """Build the frame cache and each seed's audio cache before any training run, so parallel runs only read them
    (two processes building one cache would race)."""

    def build(seed: int) -> None:
        arguments = ["--data_dir", data_dir, "--cache_only", "true", "--seed", str(seed),
                     *cache_arguments(cache_dir, seed, frames=seed == seeds[0])]
        launch_train(arguments, os.path.join(log_dir, f"cache-seed{seed}.log"))

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(build, seeds))


def train_runs(data_dir: str, runs_dir: str, cache_dir: str, seeds: list[int], epochs: int | None, jobs: int,
               started: float) -> None:
    """Train every gate mode for every seed, `jobs` runs at a time; each run is deterministic given its seed."""

    def train(mode_and_seed: tuple[str, int]) -> None:
        mode, seed = mode_and_seed
        run_dir = os.path.join(runs_dir, f"{mode}-seed{seed}")
        # A rerun retrains: `--overwrite_output_dir` replaces only the checkpoints an earlier demo run left there.
        arguments = ["--data_dir", data_dir, "--output_dir", run_dir, "--gate_mode", mode, "--seed", str(seed),
                     "--overwrite_output_dir", "true", *cache_arguments(cache_dir, seed)]
        launch_train(arguments + (["--epochs", str(epochs)] if epochs else []), run_dir + ".log")
        print(f"[{time.time() - started:5.0f}s] trained {mode} (seed {seed})", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train, [(mode, seed) for seed in seeds for mode in MODES]))


def split_by_kind(details: dict, kinds: list[str]) -> dict:
    """R@K of both directions restricted to queries of each clip kind (one caption per synthetic clip)."""
    similarity, caption_video = details["similarity"], details["caption_video"].numpy()
    kinds = np.asarray(kinds)
    caption_kinds = kinds[caption_video]
    video_caption = np.argsort(caption_video)  # one caption per video: caption index of each video
    result = {}
    for kind in KINDS:
        rows = np.flatnonzero(caption_kinds == kind)
        videos = np.flatnonzero(kinds == kind)
        result[kind] = {
            "text_to_video": retrieval_metrics(similarity[rows], caption_video[rows]),
            "video_to_text": retrieval_metrics(similarity.T[videos], video_caption[videos]),
        }
    return result


def evaluate_run(run_dir: str, test_videos, cache_dir: str, seed: int) -> dict:
    model = AvigateModel.from_pretrained(os.path.join(run_dir, "best"))
    processor = AvigateProcessor.from_pretrained(os.path.join(run_dir, "best"))
    details = evaluate_retrieval(
        model, processor, test_videos, frame_cache=FeatureCache.open(os.path.join(cache_dir, "frames")),
        audio_cache=FeatureCache.open(os.path.join(cache_dir, f"audio-{seed}")), return_details=True,
    )
    position = {video_id: i for i, video_id in enumerate(details["video_id"])}
    kinds = [None] * len(position)
    for video_id, kind in zip(test_videos["video_id"], test_videos["kind"]):
        kinds[position[video_id]] = kind
    # A gate's sign only flips what its branch adds (layers learn opposite signs), so how far a video lets its
    # sound in is the gate's magnitude: the mean |g| over layers and both gate types.
    gates = torch.cat([details["attn_gates"], details["ffn_gates"]], dim=1).abs().mean(dim=1).numpy()
    kinds_array = np.asarray(kinds)
    # The last epoch's state holds the whole curve (the best epoch's stops at that epoch).
    with open(os.path.join(latest_checkpoint(run_dir), "trainer_state.json")) as handle:
        history = json.load(handle)["history"]
    return {
        "overall": {"text_to_video": details["text_to_video"], "video_to_text": details["video_to_text"]},
        "by_kind": split_by_kind(details, kinds),
        "gates": {kind: gates[kinds_array == kind].tolist() for kind in KINDS},
        "attn_gates_by_layer": {
            kind: details["attn_gates"][kinds_array == kind].mean(dim=0).tolist() for kind in KINDS
        },
        "history": history,
        "model_dir": os.path.join(run_dir, "best"),
        "frame_embeds": details["frame_embeds"],
        "video_mask": details["video_mask"],
        "video_id": details["video_id"],
        "kinds": kinds,
    }


def mean_over_seeds(runs: list[dict], *keys) -> dict:
    values = []
    for run in runs:
        value = run
        for key in keys:
            value = value[key]
        values.append(value)
    return {metric: float(np.mean([v[metric] for v in values])) for metric in RECALLS}


def print_results_table(results: dict[str, list[dict]]) -> None:
    header = f"{'model':<18} {'clips':<18} " + " ".join(f"t2v {r:>5}" for r in RECALLS) + "  " + " ".join(
        f"v2t {r:>5}" for r in RECALLS)
    print(header)
    print("-" * len(header))
    for mode, runs in results.items():
        for group in ("overall", *KINDS):
            keys = ("overall",) if group == "overall" else ("by_kind", group)
            t2v = mean_over_seeds(runs, *keys, "text_to_video")
            v2t = mean_over_seeds(runs, *keys, "video_to_text")
            print(f"{MODES[mode]:<18} {group:<18} " + " ".join(f"{t2v[r]:9.1f}" for r in RECALLS) + "  "
                  + " ".join(f"{v2t[r]:9.1f}" for r in RECALLS))


def print_gate_table(runs: list[dict]) -> dict:
    print(f"{'clip kind':<18} {'mean |gate|':>11} {'std':>7} {'min':>7} {'max':>7}  "
          "cross-attention gate per layer (signed)")
    summary = {}
    for kind in KINDS:
        values = np.concatenate([run["gates"][kind] for run in runs])
        by_layer = np.mean([run["attn_gates_by_layer"][kind] for run in runs], axis=0)
        summary[kind] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                         "max": float(values.max()), "attn_gate_by_layer": by_layer.tolist()}
        print(f"{kind:<18} {values.mean():11.3f} {values.std():7.3f} {values.min():7.3f} {values.max():7.3f}  "
              + " ".join(f"{value:+.3f}" for value in by_layer))
    return summary


def plot(runs: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (gate_axis, loss_axis, recall_axis) = plt.subplots(1, 3, figsize=(15, 4))
    gates = [np.concatenate([run["gates"][kind] for run in runs["learned"]]) for kind in KINDS]
    gate_axis.boxplot(gates, tick_labels=[kind.replace("_", "\n") for kind in KINDS])
    gate_axis.set_title("learned gate per clip: mean |g| over layers, attn + ffn")
    gate_axis.axhline(0, color="gray", lw=0.5)
    for mode, mode_runs in runs.items():
        for index, run in enumerate(mode_runs):
            epochs = [record["epoch"] for record in run["history"]]
            label = MODES[mode] if index == 0 else None
            loss_axis.plot(epochs, [record["loss"] for record in run["history"]], color=f"C{list(MODES).index(mode)}",
                           label=label, alpha=0.8)
            recall_axis.plot(epochs, [record.get("t2v_R@1", np.nan) for record in run["history"]],
                             color=f"C{list(MODES).index(mode)}", label=label, alpha=0.8)
    loss_axis.set(title="training loss (last step of each epoch)", xlabel="epoch")
    recall_axis.set(title="validation text→video R@1", xlabel="epoch")
    loss_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@torch.no_grad()
def example_searches(run: dict, test_videos, queries: list[str]) -> None:
    """Rank the test clips, embedded once by `evaluate_run`, for each query: one text encoding plus a scan."""
    model = AvigateModel.from_pretrained(run["model_dir"])
    processor = AvigateProcessor.from_pretrained(run["model_dir"])
    captions = dict(zip(test_videos["video_id"], (c[0] for c in test_videos["captions"])))
    scores = model.similarity(embed_texts(model, processor, queries), run["frame_embeds"], run["video_mask"])
    for query, row in zip(queries, scores):
        print(f'query: "{query}"')
        for rank, index in enumerate(row.topk(3).indices.tolist(), start=1):
            video_id = run["video_id"][index]
            print(f"  {rank}. {video_id:<22} score {row[index]:6.2f}  [{run['kinds'][index]}] {captions[video_id]}")


def main(argv=None) -> None:
    args = parse_arguments(argv)
    started = time.time()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs or (4 if args.quick else None)
    data_dir = os.path.join(args.output_dir, "data")
    cache_dir = os.path.join(args.output_dir, "cache")
    generate_synthetic_benchmark(data_dir, seed=0, preset="quick" if args.quick else "default")
    print(f"[{time.time() - started:5.0f}s] synthetic benchmark in {data_dir}")

    runs_dir = os.path.join(args.output_dir, "runs")
    build_caches(data_dir, cache_dir, seeds, args.jobs, runs_dir)
    print(f"[{time.time() - started:5.0f}s] frame and audio caches in {cache_dir}")
    train_runs(data_dir, runs_dir, cache_dir, seeds, epochs, args.jobs, started)

    test_videos = load_benchmark("synthetic", data_dir, "test", view="videos")
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for seed in seeds:
        for mode in MODES:
            results[mode].append(evaluate_run(os.path.join(runs_dir, f"{mode}-seed{seed}"), test_videos, cache_dir,
                                              seed))
    print(f"[{time.time() - started:5.0f}s] evaluated every run on the test split")

    print(f"\n1. Test retrieval, mean over seeds {seeds} (R@K in %)")
    print_results_table(results)
    print("\n2. Learned gates per clip kind (mean over seeds; |g| = how far the gate lets the sound in)")
    gate_summary = print_gate_table(results["learned"])

    model_dir = os.path.join(args.output_dir, "avigate-synthetic")
    best_dir = os.path.join(runs_dir, f"learned-seed{seeds[0]}", "best")
    # Replaces only the model folder a previous demo wrote (marked as a best model), never a folder of the user's.
    with atomic_folder(model_dir, BEST_MODEL_KIND) as staging:
        shutil.copytree(best_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER_FILE))
    write_model_card(model_dir, eval_results=os.path.join(model_dir, "eval_results.json"))
    plot_path = os.path.join(model_dir, "gates_and_training.png")
    plot(results, plot_path)
    print(f"\n3. Plot of gates per kind and training curves: {plot_path}")

    print("\n4. Example searches over the test clips (learned model, seed %d)" % seeds[0])
    learned = results["learned"][0]
    informative = [c[0] for c, k in zip(test_videos["captions"], test_videos["kind"]) if k == "audio_informative"]
    silent = [c[0] for c, k in zip(test_videos["captions"], test_videos["kind"]) if k != "audio_informative"]
    example_searches(learned, test_videos, [informative[0], silent[0]])

    summary = {
        "seeds": seeds, "quick": args.quick, "wall_time_s": round(time.time() - started, 1),
        "results": {mode: {"overall": {d: mean_over_seeds(runs, "overall", d) for d in DIRECTIONS},
                           **{kind: {d: mean_over_seeds(runs, "by_kind", kind, d)
                                     for d in DIRECTIONS} for kind in KINDS},
                           "per_seed": [{"overall": run["overall"], "by_kind": run["by_kind"]} for run in runs]}
                    for mode, runs in results.items()},
        "gates": gate_summary,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    print(f"\nmodel, processor, card and plot: {model_dir}; all numbers: {args.output_dir}/results.json; "
          f"wall time {summary['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
