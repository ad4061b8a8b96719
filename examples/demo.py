#!/usr/bin/env python
"""The main job: train AVIGATE on the synthetic audio-visual benchmark, compare it with its ablations, show the gate.

    python examples/demo.py                           # default set, 3 seeds × {learned, closed, open} gates
    python examples/demo.py --seeds 0 1 2 3 4         # the same with 5 seeds (tighter standard errors)
    python examples/demo.py --quick                   # the same path on the small set with one seed (CI)

Steps, each announced with the elapsed time: generate the benchmark (PyAV mp4 files, seeded), build the frame and
audio caches once (`train.py --cache_only true`) and train each gate mode with
`examples/train.py --config examples/configs/synthetic.yaml` (what `accelerate launch` runs on one process), `--jobs`
processes at a time, a seed's runs starting once its caches exist (one progress bar over all epochs, a line per
finished cache and run; each run's log is in `OUTPUT/runs`), evaluate the best epoch of every run on the test split,
and print

1. text→video and video→text R@1/R@5/R@10 for AVIGATE (learned gates), visual only (closed) and ungated fusion (open),
   overall and per clip kind;
2. text→video R@1 per clip kind with AVIGATE's paired difference from each ablation (mean ± standard error over
   seeds: the same seed's runs see the same test clips, so clip difficulty cancels);
3. per attribute (colour, shape, direction, background, sound), how often the rank-1 clip matches the query;
4. the mean and spread of the learned gates per clip kind;
5. a PNG of gate values per kind and of the training curves (one line per run), saved next to the model;
6. example searches (an audio-informative, an offscreen and a silent caption) with their top 3: score, whether it
   is the described clip, the clip's gate, and its caption.

The learned model of the first seed is saved with its processor, training arguments and a model card in
`OUTPUT/avigate-synthetic`; every number is in `OUTPUT/results.json`.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import datasets
import numpy as np
import torch
import transformers
import yaml
from tqdm.auto import tqdm

from modeling_avigate import AvigateModel, AvigateProcessor, forked_scripts
from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
from modeling_avigate.data.synthetic import AUDIO_INFORMATIVE, AUDIO_NOISE, KINDS
from modeling_avigate.embedding import embed_texts
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.feature_cache import FeatureCache
from modeling_avigate.folders import MARKER_FILE, atomic_folder
from modeling_avigate.hub.model_card import write_model_card
from modeling_avigate.retrieval_metrics import retrieval_metrics
from modeling_avigate.training import BEST_MODEL_KIND, latest_checkpoint


EXAMPLES = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(EXAMPLES, "configs", "synthetic.yaml")
MODES = {"learned": "AVIGATE (gated)", "closed": "visual only", "open": "ungated fusion"}
RECALLS = ("R@1", "R@5", "R@10")
QUICK_EPOCHS = 4
EPOCH_LINE = re.compile(r"epoch (\d+) \S+ text→video")  # train.py's line after each validation
DIRECTIONS = ("text_to_video", "video_to_text")
ATTRIBUTES = ("color", "shape", "direction", "background", "sound")
# What train.py imports (torch, transformers, accelerate, datasets, the package): the server that forks the training
# runs imports them once, so a run starts in a fraction of a second instead of after ~6 CPU-seconds of imports (a
# minute of a 3-seed demo's two cores).
RUN_IMPORTS = ("accelerate", "datasets", "yaml", "modeling_avigate", "modeling_avigate.data",
               "modeling_avigate.evaluation", "modeling_avigate.hub.model_card", "modeling_avigate.pipeline",
               "modeling_avigate.training")
# One thread per run: the tiny model's matrices are too small for two intra-op threads to pay off, so the demo runs as
# many processes as cores. `OMP_NUM_THREADS`, when set, overrides.
forked_scripts.configure_server(RUN_IMPORTS, {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default="outputs/demo")
    parser.add_argument("--quick", action="store_true", help="small set, one seed, fewer epochs (about 3 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2, or 0 with --quick)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="training runs at a time, one thread each (default: the number of CPUs)")
    return parser.parse_args(argv)


def launch_train(arguments: list[str], log_path: str, on_epoch: Callable[[int], None] | None = None) -> None:
    """One run of `examples/train.py --config synthetic.yaml ARGUMENTS` in its own process (forked from a server
    with `RUN_IMPORTS` imported), logged to `log_path`; `on_epoch(epochs_done)` is called each time the run logs a
    validation."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log:

        def on_line(line: str) -> None:
            log.write(line)
            match = EPOCH_LINE.search(line)
            if on_epoch is not None and match:
                on_epoch(int(match.group(1)))

        exitcode = forked_scripts.run_script(os.path.join(EXAMPLES, "train.py"), ["--config", CONFIG, *arguments],
                                             on_line)
    if exitcode:
        raise SystemExit(f"training with {' '.join(arguments)} failed; see {log_path}")


def elapsed(started: float) -> str:
    return f"[{time.time() - started:5.0f}s]"


def cache_arguments(cache_dir: str, seed: int, frames: bool = True) -> list[str]:
    """Cache folders of one seed's runs: decoded frames are shared (`frames=False` leaves them out: `null` turns a
    cache off); the frozen random AST, hence its cache, is the seed's own."""
    return [
        "--frame_cache", os.path.join(cache_dir, "frames") if frames else "null",
        "--audio_cache", os.path.join(cache_dir, f"audio-{seed}"),
    ]


def cache_and_train(data_dir: str, runs_dir: str, cache_dir: str, seeds: list[int], epochs: int, jobs: int,
                    started: float) -> None:
    """Build the frame cache and each seed's audio cache, and train every gate mode for every seed, `jobs` processes
    at a time. The caches are queued first and a seed's runs wait for that seed's caches, so parallel runs only read
    them (two processes building one cache would race) while no core idles waiting for the last cache. One progress
    bar counts the epochs of all runs; each finished cache and run prints a line (a run's with its validation R@1).
    Every run is deterministic given its seed."""
    runs = [(mode, seed) for seed in seeds for mode in MODES]
    bar = tqdm(total=len(runs) * epochs, desc=f"training {len(runs)} runs", unit="epoch", leave=False,
               file=sys.stdout)
    lock = threading.Lock()

    def build(seed: int) -> None:
        arguments = ["--data_dir", data_dir, "--cache_only", "true", "--seed", str(seed),
                     *cache_arguments(cache_dir, seed, frames=seed == seeds[0])]
        launch_train(arguments, os.path.join(runs_dir, f"cache-seed{seed}.log"))
        with lock:
            bar.write(f"{elapsed(started)} cached {'frames and ' if seed == seeds[0] else ''}seed {seed}'s audio "
                      "features")

    def train(mode: str, seed: int) -> None:
        cached[seeds[0]].result()  # the shared frame cache
        cached[seed].result()
        run_dir = os.path.join(runs_dir, f"{mode}-seed{seed}")
        # A rerun retrains: `--overwrite_output_dir` replaces only the checkpoints an earlier demo run left there.
        arguments = ["--data_dir", data_dir, "--output_dir", run_dir, "--gate_mode", mode, "--seed", str(seed),
                     "--epochs", str(epochs), "--overwrite_output_dir", "true", *cache_arguments(cache_dir, seed)]
        counted = 0

        def epochs_done(done: int) -> None:
            nonlocal counted
            with lock:
                bar.update(done - counted)
            counted = done

        launch_train(arguments, run_dir + ".log", on_epoch=epochs_done)
        with open(os.path.join(latest_checkpoint(run_dir), "trainer_state.json")) as handle:
            state = json.load(handle)
        with lock:
            bar.write(f"{elapsed(started)} trained {MODES[mode]} (seed {seed}): best validation text→video R@1 "
                      f"{state['best_metric']:.1f} at epoch {state['best_epoch']}/{epochs}")

    # The pool takes tasks in the order they are submitted, so every cache is started before any run that waits on it.
    with ThreadPoolExecutor(jobs) as pool:
        cached = {seed: pool.submit(build, seed) for seed in seeds}
        trained = [pool.submit(train, mode, seed) for mode, seed in runs]
        for future in [*cached.values(), *trained]:
            future.result()
    bar.close()


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
        if not len(videos):
            continue
        result[kind] = {
            "text_to_video": retrieval_metrics(similarity[rows], caption_video[rows]),
            "video_to_text": retrieval_metrics(similarity.T[videos], video_caption[videos]),
        }
    return result


def attribute_matches(details: dict, test_videos) -> dict[str, float]:
    """For each attribute, how often (in %) the rank-1 clip of a caption matches the caption's own clip on it (the
    sound attribute only over captions that name a sound)."""
    rows = {video_id: index for index, video_id in enumerate(test_videos["video_id"])}
    order = [rows[video_id] for video_id in details["video_id"]]  # test_videos row of each embedded video
    top = details["similarity"].argmax(dim=1).numpy()
    truth = details["caption_video"].numpy()
    result = {}
    for attribute in ATTRIBUTES:
        values = np.asarray(test_videos[attribute])[order]
        queries = np.arange(len(truth))
        if attribute == "sound":
            queries = queries[np.asarray(test_videos["kind"])[order][truth] == AUDIO_INFORMATIVE]
        result[attribute] = float(100 * np.mean(values[top[queries]] == values[truth[queries]]))
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
    present = [kind for kind in KINDS if kind in kinds]
    # The last epoch's state holds the whole curve (the best epoch's stops at that epoch).
    with open(os.path.join(latest_checkpoint(run_dir), "trainer_state.json")) as handle:
        history = json.load(handle)["history"]
    return {
        "overall": {"text_to_video": details["text_to_video"], "video_to_text": details["video_to_text"]},
        "by_kind": split_by_kind(details, kinds),
        "attributes": attribute_matches(details, test_videos),
        "gates": {kind: gates[kinds_array == kind].tolist() for kind in present},
        "clip_gates": gates.tolist(),
        "attn_gates_by_layer": {
            kind: details["attn_gates"][kinds_array == kind].mean(dim=0).tolist() for kind in present
        },
        "history": history,
        "seed": seed,
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
        for group in ("overall", *runs[0]["by_kind"]):
            keys = ("overall",) if group == "overall" else ("by_kind", group)
            t2v = mean_over_seeds(runs, *keys, "text_to_video")
            v2t = mean_over_seeds(runs, *keys, "video_to_text")
            print(f"{MODES[mode]:<18} {group:<18} " + " ".join(f"{t2v[r]:9.1f}" for r in RECALLS) + "  "
                  + " ".join(f"{v2t[r]:9.1f}" for r in RECALLS))


def recall_at_1(run: dict, group: str) -> float:
    """Text→video R@1 of one run, overall or on one clip kind."""
    metrics = run["overall"] if group == "overall" else run["by_kind"][group]
    return metrics["text_to_video"]["R@1"]


def paired_difference(runs: list[dict], baselines: list[dict], group: str) -> tuple[float, float]:
    """Mean and standard error over seeds of the per-seed difference in text→video R@1 (same seed, same test clips,
    so clip difficulty cancels); the standard error is `nan` with one seed.

    Example: seeds giving 80, 90 against 70, 70 → differences 10, 20 → mean 15, SE std(10, 20) / √2 = 5.
    """
    differences = np.array([recall_at_1(run, group) - recall_at_1(base, group) for run, base in zip(runs, baselines)])
    error = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else float("nan")
    return float(differences.mean()), float(error)


def print_differences(results: dict[str, list[dict]]) -> dict:
    """AVIGATE minus each ablation, per clip kind: paired mean difference ± standard error over seeds."""
    groups = ("overall", *results["learned"][0]["by_kind"])
    print(f"{'clips':<18} " + " ".join(f"{MODES[mode]:>15}" for mode in MODES) + "   "
          + "   ".join(f"{'AVIGATE − ' + MODES[mode]:>24}" for mode in MODES if mode != "learned"))
    summary = {}
    for group in groups:
        means = {mode: np.mean([recall_at_1(run, group) for run in runs]) for mode, runs in results.items()}
        differences = {mode: paired_difference(results["learned"], results[mode], group)
                       for mode in MODES if mode != "learned"}
        summary[group] = {"mean_t2v_R@1": {mode: float(value) for mode, value in means.items()},
                          "difference_vs": {mode: {"mean": m, "standard_error": e}
                                            for mode, (m, e) in differences.items()}}
        print(f"{group:<18} " + " ".join(f"{means[mode]:15.1f}" for mode in MODES) + "   "
              + "   ".join(f"{f'{m:+.1f} ± {e:.1f}':>24}" for m, e in differences.values()))
    return summary


def print_attribute_table(results: dict[str, list[dict]]) -> dict:
    """How often the rank-1 clip of a test caption matches the caption's clip on each attribute, mean over seeds."""
    print(f"{'model':<18} " + " ".join(f"{attribute:>10}" for attribute in ATTRIBUTES))
    table = {}
    for mode, runs in results.items():
        table[mode] = {attribute: float(np.mean([run["attributes"][attribute] for run in runs]))
                       for attribute in ATTRIBUTES}
        print(f"{MODES[mode]:<18} " + " ".join(f"{table[mode][attribute]:10.1f}" for attribute in ATTRIBUTES))
    return table


def print_gate_table(runs: list[dict]) -> dict:
    print(f"{'clip kind':<18} {'mean |gate|':>11} {'std':>7} {'min':>7} {'max':>7}  "
          "cross-attention gate per layer (signed)")
    summary = {}
    for kind in runs[0]["gates"]:
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

    figure, (gate_axis, loss_axis, recall_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    kinds = list(runs["learned"][0]["gates"])
    gates = [np.concatenate([run["gates"][kind] for run in runs["learned"]]) for kind in kinds]
    gate_axis.boxplot(gates, tick_labels=[kind.replace("_", "\n") for kind in kinds])
    gate_axis.set(title="AVIGATE's gate per test clip (all seeds)", xlabel="clip kind",
                  ylabel="mean |gate| over layers (attn + ffn)")
    gate_axis.axhline(0, color="gray", lw=0.5)
    styles = ("-", "--", ":", "-.", (0, (3, 1, 1, 1)))
    for mode, mode_runs in runs.items():
        color = f"C{list(MODES).index(mode)}"
        for index, run in enumerate(mode_runs):
            epochs = [record["epoch"] for record in run["history"]]
            style = styles[index % len(styles)]
            label = f"{MODES[mode]}, seed {run['seed']}"
            loss_axis.plot(epochs, [record["loss"] for record in run["history"]], color=color, linestyle=style,
                           label=label, alpha=0.8, marker=".")
            recall_axis.plot(epochs, [record.get("t2v_R@1", np.nan) for record in run["history"]], color=color,
                             linestyle=style, label=label, alpha=0.8, marker=".")
    loss_axis.set(title="training loss (one line per run)", xlabel="epoch", ylabel="contrastive loss, last step")
    recall_axis.set(title="validation text→video R@1 (one line per run)", xlabel="epoch", ylabel="R@1 (%)")
    recall_axis.legend(title="model, seed (line style)", fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@torch.no_grad()
def example_searches(run: dict, test_videos, queries: list[str]) -> None:
    """Rank the test clips, embedded once by `evaluate_run`, for each query (one text encoding plus a scan), and show
    the top 3: score, caption, whether it is the clip the query describes, and how far its gate let the sound in."""
    model = AvigateModel.from_pretrained(run["model_dir"])
    processor = AvigateProcessor.from_pretrained(run["model_dir"])
    captions = dict(zip(test_videos["video_id"], (c[0] for c in test_videos["captions"])))
    scores = model.similarity(embed_texts(model, processor, queries), run["frame_embeds"], run["video_mask"])
    for query, row in zip(queries, scores):
        print(f'query: "{query}"')
        for rank, index in enumerate(row.topk(3).indices.tolist(), start=1):
            video_id = run["video_id"][index]
            verdict = "correct" if captions[video_id] == query else "wrong  "
            print(f"  {rank}. {verdict} score {row[index]:6.2f}  gate {run['clip_gates'][index]:.3f}  "
                  f"[{run['kinds'][index]}] {captions[video_id]}")


def config_epochs() -> int:
    with open(CONFIG) as handle:
        return yaml.safe_load(handle)["epochs"]


def main(argv=None) -> None:
    args = parse_arguments(argv)
    started = time.time()
    # The report shows one progress bar per phase; the libraries' own (dataset preparation, weight loading) would be
    # left behind in it.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else config_epochs())
    data_dir = os.path.join(args.output_dir, "data")
    cache_dir = os.path.join(args.output_dir, "cache")
    preset = "quick" if args.quick else "default"
    print(f"{elapsed(started)} 1/5 writing the synthetic benchmark ({preset} set) to {data_dir}", flush=True)
    generate_synthetic_benchmark(data_dir, seed=0, preset=preset)

    runs_dir = os.path.join(args.output_dir, "runs")
    print(f"{elapsed(started)} 2/5 caching decoded frames and the frozen audio encoder's features for seeds {seeds} "
          f"in {cache_dir}", flush=True)
    print(f"{elapsed(started)} 3/5 training {len(MODES)} gate modes × {len(seeds)} seeds, {epochs} epochs each, "
          f"{args.jobs} processes at a time with the caching, a seed's runs once its caches exist (logs: "
          f"{runs_dir}/*.log)", flush=True)
    cache_and_train(data_dir, runs_dir, cache_dir, seeds, epochs, args.jobs, started)

    print(f"{elapsed(started)} 4/5 evaluating every run on the test split", flush=True)
    test_videos = load_benchmark("synthetic", data_dir, "test", view="videos")
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    # The libraries' own progress bars and messages (weight loading, embedding) go to a log, so that the report shows
    # one bar for the phase and nothing is left behind.
    with (open(os.path.join(runs_dir, "evaluate.log"), "w") as log, contextlib.redirect_stderr(log),
          tqdm(total=len(seeds) * len(MODES), desc="evaluating", unit="run", leave=False, file=sys.stdout) as bar):
        for seed in seeds:
            for mode in MODES:
                results[mode].append(evaluate_run(os.path.join(runs_dir, f"{mode}-seed{seed}"), test_videos,
                                                  cache_dir, seed))
                bar.update()

    model_dir = os.path.join(args.output_dir, "avigate-synthetic")
    print(f"{elapsed(started)} 5/5 saving the AVIGATE model of seed {seeds[0]} with its card and plot to {model_dir}",
          flush=True)
    # best/ holds the run's train_args.json, from which the card describes the training.
    best_dir = os.path.join(runs_dir, f"learned-seed{seeds[0]}", "best")
    # Replaces only the model folder a previous demo wrote (marked as a best model), never a folder of the user's.
    with atomic_folder(model_dir, BEST_MODEL_KIND) as staging:
        shutil.copytree(best_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER_FILE))
    write_model_card(model_dir, eval_results=os.path.join(model_dir, "eval_results.json"))
    plot_path = os.path.join(model_dir, "gates_and_training.png")
    plot(results, plot_path)

    print(f"\n1. Test retrieval, mean over seeds {seeds} (R@K in %; {len(test_videos['video_id'])} test clips)")
    print_results_table(results)
    print(f"\n2. Text→video R@1 per clip kind: mean over seeds, and AVIGATE's paired difference from each ablation "
          f"(mean ± standard error over {len(seeds)} seeds, same test clips)")
    differences = print_differences(results)
    print("\n3. What the models learned: % of test captions whose rank-1 clip matches the caption's clip on each "
          "attribute (sound: captions that name one)")
    attributes = print_attribute_table(results)
    print("\n4. Learned gates per clip kind (mean over seeds; |g| = how far the gate lets the sound in)")
    gate_summary = print_gate_table(results["learned"])
    print(f"\n5. Plot of gates per kind and training curves: {plot_path}")

    print(f"\n6. Example searches over the test clips (AVIGATE, seed {seeds[0]}; gate = mean |g| of the clip)")
    first_caption = {}
    for captions, kind in zip(test_videos["captions"], test_videos["kind"]):
        first_caption.setdefault(kind, captions[0])
    example_searches(results["learned"][0], test_videos, [first_caption[kind] for kind in KINDS
                                                           if kind in first_caption and kind != AUDIO_NOISE])

    summary = {
        "seeds": seeds, "quick": args.quick, "epochs": epochs, "wall_time_s": round(time.time() - started, 1),
        "load_average": os.getloadavg(),
        "results": {mode: {"overall": {d: mean_over_seeds(runs, "overall", d) for d in DIRECTIONS},
                           **{kind: {d: mean_over_seeds(runs, "by_kind", kind, d)
                                     for d in DIRECTIONS} for kind in runs[0]["by_kind"]},
                           "per_seed": [{"overall": run["overall"], "by_kind": run["by_kind"]} for run in runs]}
                    for mode, runs in results.items()},
        "text_to_video_R@1": differences,
        "attributes": attributes,
        "gates": gate_summary,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nmodel, processor, card and plot: {model_dir}; all numbers: {args.output_dir}/results.json; "
          f"wall time {summary['wall_time_s']:.0f} s (load average {load} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
