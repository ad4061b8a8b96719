#!/usr/bin/env python
"""The main job: the paper's recipe on the synthetic audio-visual benchmark — pretrained towers, then AVIGATE
fine-tuning — compared with its ablations, on clean and on corrupted sound.

    python examples/demo.py                           # default set, 3 seeds × {learned, closed, open} gates
    python examples/demo.py --seeds 0 1 2 3 4         # the same with 5 seeds (tighter standard errors)
    python examples/demo.py --quick                   # the same path on the small set with one seed (CI)

Steps, each announced with the elapsed time:

1. generate the benchmark (PyAV mp4 files, seeded);
2. stage 1 (`modeling_avigate.pretraining`): a tiny CLIP and a tiny AST pretrained on the synthetic world's own
   `pretrain` split (no clip of the benchmark's), saved in transformers' formats in `OUTPUT/pretrained` and reused by
   later runs whose settings are the same; each tower's quality on the test split;
3. stage 2: build the frame cache and the frozen AST's audio cache once (`train.py --cache_only true`), then train
   every gate mode from stage 1's towers with `examples/train.py --config examples/configs/synthetic.yaml` (the
   paper's MSR-VTT recipe), `--jobs` processes at a time (one progress bar over all epochs, a line per finished run;
   each run's log is in `OUTPUT/runs`);
4. evaluate the best epoch of every run on the test split, and stage 1's CLIP alone (no fine-tuning, mean-pooled
   frames), the floor every model must beat;
5. robustness: the test clips' tracks replaced by or mixed with another clip's track, noise, tones or silence at
   several signal-to-noise ratios (`modeling_avigate.robustness`), every AVIGATE and ungated model re-evaluated;
6. save the first seed's AVIGATE model with its processor, training arguments and a model card, and the plots.

It prints each tower's quality; text→video and video→text R@K per model and clip kind; AVIGATE's paired difference
from each ablation (mean ± standard error over seeds: the same seed's runs see the same test clips, so clip
difficulty cancels) with the CLIP-only floor; how often the rank-1 clip matches the query on each attribute; the
learned gates per clip kind and per corruption; R@1 under each corruption and SNR; example searches. Every number is
in `OUTPUT/results.json`.
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

from modeling_avigate import AvigateModel, AvigateProcessor, forked_scripts, pretraining
from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
from modeling_avigate.data.synthetic import AUDIO_INFORMATIVE, AUDIO_NOISE, KINDS, NO_AUDIO
from modeling_avigate.embedding import embed_texts
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.feature_cache import FeatureCache
from modeling_avigate.folders import MARKER_FILE, atomic_folder
from modeling_avigate.hub.model_card import write_model_card
from modeling_avigate.retrieval_metrics import retrieval_metrics
from modeling_avigate.robustness import corrupted_audio_caches, read_tracks
from modeling_avigate.training import BEST_MODEL_KIND, latest_checkpoint


EXAMPLES = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(EXAMPLES, "configs", "synthetic.yaml")
MODES = {"learned": "AVIGATE (gated)", "closed": "visual only", "open": "ungated fusion"}
RECALLS = ("R@1", "R@5", "R@10")
QUICK_EPOCHS = 4
# Stage 1 of `--quick`: a smaller pretraining set and fewer epochs (CI checks the path, not the numbers).
QUICK_PRETRAINING = pretraining.PretrainingSettings(num_clips=256, clip_epochs=8, ast_epochs=3)
# Robustness: each corruption at these SNRs in dB (`None`: the track replaced), and silence as an all-zero track.
SNRS = (10, 0, -10, None)
NOISY_CONDITIONS = [(corruption, snr) for corruption in ("other_track", "noise", "tones") for snr in SNRS]
CONDITIONS = [*NOISY_CONDITIONS, ("silence", None)]
ROBUSTNESS_MODES = ("learned", "open")  # visual-only models never read the sound: their R@1 is the clean one
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


def stage_one_arguments(pretrained_dir: str) -> list[str]:
    """Stage 2 starts from stage 1's folders: CLIP towers and tokenizer, and the AST."""
    clip_dir = os.path.join(pretrained_dir, pretraining.CLIP_FOLDER)
    return ["--clip_name_or_path", clip_dir, "--ast_name_or_path", os.path.join(pretrained_dir, pretraining.AST_FOLDER),
            "--processor.tokenizer", clip_dir]


def cache_arguments(cache_dir: str) -> list[str]:
    """Cache folders shared by every run: decoded frames, and the frozen stage-1 AST's states (the same AST for every
    seed and gate mode)."""
    return ["--frame_cache", os.path.join(cache_dir, "frames"), "--audio_cache", os.path.join(cache_dir, "audio")]


def cache_and_train(data_dir: str, pretrained_dir: str, runs_dir: str, cache_dir: str, seeds: list[int], epochs: int,
                    jobs: int, started: float) -> None:
    """Build the frame and audio caches once, then train every gate mode for every seed from stage 1's towers, `jobs`
    processes at a time (parallel runs only read the caches). One progress bar counts the epochs of all runs; each
    finished run prints a line with its validation R@1. Every run is deterministic given its seed."""
    common = ["--data_dir", data_dir, *stage_one_arguments(pretrained_dir), *cache_arguments(cache_dir)]
    launch_train([*common, "--cache_only", "true"], os.path.join(runs_dir, "cache.log"))
    print(f"{elapsed(started)} cached the frames and the frozen AST's features", flush=True)
    runs = [(mode, seed) for seed in seeds for mode in MODES]
    bar = tqdm(total=len(runs) * epochs, desc=f"training {len(runs)} runs", unit="epoch", leave=False,
               file=sys.stdout)
    lock = threading.Lock()

    def train(mode: str, seed: int) -> None:
        run_dir = os.path.join(runs_dir, f"{mode}-seed{seed}")
        # A rerun retrains: `--overwrite_output_dir` replaces only the checkpoints an earlier demo run left there.
        arguments = [*common, "--output_dir", run_dir, "--gate_mode", mode, "--seed", str(seed),
                     "--epochs", str(epochs), "--overwrite_output_dir", "true"]
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

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(train, mode, seed) for mode, seed in runs]:
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


def clip_kinds(details: dict, test_videos) -> list[str]:
    """The clip kind of each embedded video, in the order of `details["video_id"]`."""
    kind_of = dict(zip(test_videos["video_id"], test_videos["kind"]))
    return [kind_of[video_id] for video_id in details["video_id"]]


def gate_magnitudes(details: dict) -> np.ndarray:
    """How far each video lets its sound in: the mean |g| over layers and both gate types. (A gate's sign only flips
    what its branch adds, and layers learn opposite signs.)"""
    return torch.cat([details["attn_gates"], details["ffn_gates"]], dim=1).abs().mean(dim=1).numpy()


def evaluate_run(run_dir: str, test_videos, cache_dir: str, seed: int) -> dict:
    model = AvigateModel.from_pretrained(os.path.join(run_dir, "best"))
    processor = AvigateProcessor.from_pretrained(os.path.join(run_dir, "best"))
    details = evaluate_retrieval(
        model, processor, test_videos, frame_cache=FeatureCache.open(os.path.join(cache_dir, "frames")),
        audio_cache=FeatureCache.open(os.path.join(cache_dir, "audio")), return_details=True,
    )
    kinds = clip_kinds(details, test_videos)
    gates = gate_magnitudes(details)
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


def condition_name(condition: tuple[str, float | None]) -> str:
    corruption, snr = condition
    return f"{corruption} replaced" if snr is None else f"{corruption} at {snr:+d} dB"


def clip_floor(pretrained_dir: str, test_videos, cache_dir: str) -> dict:
    """Stage 1's CLIP alone on the test split (mean-pooled frames, no fine-tuning, no sound): R@K overall and per
    clip kind."""
    clip_dir = os.path.join(pretrained_dir, pretraining.CLIP_FOLDER)
    clip = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(clip_dir)
    frames = FeatureCache.open(os.path.join(cache_dir, "frames"))
    video_ids = list(test_videos["video_id"])
    inputs = [frames.get(video_id) for video_id in video_ids]
    similarity = pretraining.clip_video_similarity(
        clip, tokenizer, [captions[0] for captions in test_videos["captions"]],
        torch.stack([item["pixel_values"] for item in inputs]), torch.stack([item["video_mask"] for item in inputs]))
    details = {"similarity": similarity, "caption_video": torch.arange(len(video_ids))}
    overall = retrieval_metrics(similarity, details["caption_video"])
    return {"overall": {"text_to_video": overall}, "by_kind": split_by_kind(details, list(test_videos["kind"]))}


def evaluate_robustness(runs_dir: str, test_videos, cache_dir: str, seeds: list[int], jobs: int) -> dict:
    """Every AVIGATE and ungated model on the test split with each corrupted set of tracks (`CONDITIONS`): R@1
    overall and per clip kind, and AVIGATE's gates per clip kind. The frozen AST is stage 1's in every model, so the
    corrupted tracks' AST states are computed once, with the first model's."""
    video_ids = list(test_videos["video_id"])
    tracks = read_tracks(list(test_videos["video"]))
    first = os.path.join(runs_dir, f"learned-seed{seeds[0]}", "best")
    caches = corrupted_audio_caches(AvigateModel.from_pretrained(first), AvigateProcessor.from_pretrained(first),
                                    video_ids, tracks, CONDITIONS, num_proc=jobs)
    frames = FeatureCache.open(os.path.join(cache_dir, "frames"))
    results = {mode: {condition_name(condition): [] for condition in CONDITIONS} for mode in ROBUSTNESS_MODES}
    for mode in ROBUSTNESS_MODES:
        for seed in seeds:
            best = os.path.join(runs_dir, f"{mode}-seed{seed}", "best")
            model, processor = AvigateModel.from_pretrained(best), AvigateProcessor.from_pretrained(best)
            for condition in CONDITIONS:
                details = evaluate_retrieval(model, processor, test_videos, frame_cache=frames,
                                             audio_cache=caches[condition], return_details=True, progress=False,
                                             batch_size=len(video_ids))
                kinds = np.asarray(clip_kinds(details, test_videos))
                gates = gate_magnitudes(details)
                results[mode][condition_name(condition)].append({
                    "overall": {"text_to_video": details["text_to_video"]},
                    "by_kind": split_by_kind(details, list(kinds)),
                    "gates": {kind: float(gates[kinds == kind].mean()) for kind in KINDS if (kinds == kind).any()},
                })
    return results


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


def stage_one_card_section(record: dict, quality: dict) -> str:
    """The model card's account of stage 1: how the towers this model starts from were pretrained, and how good each
    one is on its own."""
    settings, split = record["settings"], record["pretraining_split"]
    clip = ", ".join(f"{name} {value:.1f} %" for name, value in quality["clip_zero_shot"].items())
    ast = ", ".join(f"{name} {value:.1f} %" for name, value in quality["ast"].items())
    return f"""
## Stage 1: the pretrained towers

This model was initialised with `AvigateModel.from_clip_ast_pretrained` from towers pretrained for the synthetic world
by `modeling_avigate.pretraining` (the paper starts from `openai/clip-vit-base-patch32` and
`MIT/ast-finetuned-audioset-10-10-0.4593`), on the `{split['name']}` split of the benchmark's generator ({split['clips']}
clips, seed {split['seed']}: no clip of the benchmark's train, validation or test split):

- CLIP ({settings['num_hidden_layers']} layers of width {settings['hidden_size']} per tower, {settings['patch_size']}-pixel
  patches on {settings['image_size']}-pixel frames): symmetric InfoNCE between single frames and captions naming only what is
  visible (colour, shape, direction, background, the loudspeaker; never a sound), {settings['clip_epochs']} epochs.
  Zero-shot on the test frames (one of 288 visible captions): {clip}.
- AST (the same size, {settings['audio_patch_size']}-bin patches): AudioSet-style, one sigmoid per label (each sound event,
  each noise type, silence), {settings['ast_epochs']} epochs; kept frozen here. Test accuracy per label: {ast}.
"""


def print_tower_quality(quality: dict) -> None:
    clip, ast = quality["clip_zero_shot"], quality["ast"]
    print("CLIP zero-shot, % of test frames whose predicted look (one of 288 visible captions) is right on: "
          + ", ".join(f"{name} {value:.1f}" for name, value in clip.items()))
    print("AST, % of test tracks whose top label is their own: " + ", ".join(f"{name} {value:.1f}"
                                                                             for name, value in ast.items()))


def print_floor(floor: dict, results: dict[str, list[dict]]) -> dict:
    """Text→video R@1 of stage 1's CLIP alone next to each fine-tuned model's mean, per clip kind."""
    print(f"{'clips':<18} {'CLIP only':>10} " + " ".join(f"{MODES[mode]:>15}" for mode in MODES))
    table = {}
    for group in ("overall", *floor["by_kind"]):
        value = recall_at_1(floor, group) if group != "overall" else floor["overall"]["text_to_video"]["R@1"]
        means = {mode: float(np.mean([recall_at_1(run, group) for run in runs])) for mode, runs in results.items()}
        table[group] = {"clip_only": value, **means}
        print(f"{group:<18} {value:10.1f} " + " ".join(f"{means[mode]:15.1f}" for mode in MODES))
    return table


def robustness_summary(robust: dict, clean: dict[str, list[dict]]) -> dict:
    """Per condition and model: mean text→video R@1 over seeds (overall and per clip kind with a track), its drop
    from the clean R@1 of the same runs, and AVIGATE's paired difference in that drop from ungated fusion."""
    summary = {}
    for name in robust["learned"]:
        entry = {}
        for mode in ROBUSTNESS_MODES:
            runs = robust[mode][name]
            entry[mode] = {group: float(np.mean([recall_at_1(run, group) for run in runs]))
                           for group in ("overall", *runs[0]["by_kind"])}
            entry[mode]["drop"] = float(np.mean([recall_at_1(c, "overall") - recall_at_1(r, "overall")
                                                 for c, r in zip(clean[mode], runs)]))
        mean, error = paired_difference(robust["learned"][name], robust["open"][name], "overall")
        entry["avigate_minus_ungated"] = {"mean": mean, "standard_error": error}
        entry["gates"] = {kind: float(np.mean([run["gates"][kind] for run in robust["learned"][name]]))
                          for kind in robust["learned"][name][0]["gates"]}
        summary[name] = entry
    return summary


def print_robustness(summary: dict, clean: dict[str, list[dict]], seeds: list[int]) -> None:
    kinds = [kind for kind in KINDS if kind != NO_AUDIO]
    print(f"{'condition':<22} {'AVIGATE':>8} {'ungated':>8} {'AVIGATE − ungated':>18}   "
          + "   ".join(f"{kind[:14]:>14} A/U" for kind in kinds))
    rows = [("clean", {mode: {group: float(np.mean([recall_at_1(run, group) for run in clean[mode]]))
                              for group in ("overall", *kinds)} for mode in ROBUSTNESS_MODES},
             paired_difference(clean["learned"], clean["open"], "overall"))]
    rows += [(name, entry, (entry["avigate_minus_ungated"]["mean"], entry["avigate_minus_ungated"]["standard_error"]))
             for name, entry in summary.items()]
    for name, entry, (mean, error) in rows:
        print(f"{name:<22} {entry['learned']['overall']:8.1f} {entry['open']['overall']:8.1f} "
              f"{f'{mean:+.1f} ± {error:.1f}':>18}   "
              + "   ".join(f"{entry['learned'][kind]:8.1f}/{entry['open'][kind]:<5.1f}" for kind in kinds))


def print_corruption_gates(summary: dict, clean_gates: dict) -> None:
    kinds = list(clean_gates)
    print(f"{'condition':<22} " + " ".join(f"{kind:>18}" for kind in kinds))
    print(f"{'clean':<22} " + " ".join(f"{clean_gates[kind]['mean']:18.3f}" for kind in kinds))
    for name, entry in summary.items():
        print(f"{name:<22} " + " ".join(f"{entry['gates'].get(kind, float('nan')):18.3f}" for kind in kinds))


def plot_robustness(summary: dict, robust: dict, clean: dict[str, list[dict]], floor: dict, path: str) -> None:
    """R@1 (all test clips) against SNR for AVIGATE and ungated fusion, one panel per corruption (mean ± standard
    error over seeds), with the clean R@1 of each model, the visual-only model and the CLIP-only floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corruptions = list(dict.fromkeys(corruption for corruption, _ in NOISY_CONDITIONS))
    figure, axes = plt.subplots(1, len(corruptions), figsize=(5 * len(corruptions), 4.2), sharey=True)
    # The x axis runs from clean (right) to replaced (left); "replaced" sits one step below the lowest SNR.
    finite = [snr for snr in SNRS if snr is not None]
    step = finite[0] - finite[1] if len(finite) > 1 else 10
    positions = {snr: (snr if snr is not None else min(finite) - step) for snr in SNRS}
    clean_x = max(finite) + step
    for axis, corruption in zip(axes, corruptions):
        for mode in ROBUSTNESS_MODES:
            color = f"C{list(MODES).index(mode)}"
            xs, means, errors = [], [], []
            for snr in SNRS:
                values = [recall_at_1(run, "overall") for run in robust[mode][condition_name((corruption, snr))]]
                xs.append(positions[snr])
                means.append(np.mean(values))
                errors.append(np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0)
            clean_values = [recall_at_1(run, "overall") for run in clean[mode]]
            xs.append(clean_x)
            means.append(np.mean(clean_values))
            errors.append(np.std(clean_values, ddof=1) / np.sqrt(len(clean_values)) if len(clean_values) > 1 else 0)
            order = np.argsort(xs)  # from replaced (left) to clean (right)
            axis.errorbar(np.take(xs, order), np.take(means, order), yerr=np.take(errors, order), color=color,
                          marker="o", capsize=3, label=MODES[mode])
            silence = np.mean([recall_at_1(run, "overall") for run in robust[mode][condition_name(("silence", None))]])
            axis.scatter([positions[None]], [silence], color=color, marker="x", s=60,
                         label=f"{MODES[mode]}, silence")
        axis.axhline(np.mean([recall_at_1(run, "overall") for run in clean["closed"]]), color="C1", linestyle="--",
                     label="visual only (ignores the sound)")
        axis.axhline(floor["overall"]["text_to_video"]["R@1"], color="gray", linestyle=":", label="CLIP only, zero-shot")
        axis.set_xticks([*positions.values(), clean_x],
                        [*(f"{snr:+d}" if snr is not None else "replaced" for snr in SNRS), "clean"])
        axis.set(title=f"tracks corrupted by {corruption.replace('_', ' ')}", xlabel="signal-to-noise ratio (dB)")
    axes[0].set_ylabel("test text→video R@1 (%), all clips")
    axes[-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    pretrained_dir = os.path.join(args.output_dir, "pretrained")
    runs_dir = os.path.join(args.output_dir, "runs")
    preset = "quick" if args.quick else "default"
    timings = {}
    print(f"{elapsed(started)} 1/6 writing the synthetic benchmark ({preset} set) to {data_dir}", flush=True)
    generate_synthetic_benchmark(data_dir, seed=0, preset=preset)
    timings["benchmark"] = time.time() - started

    settings = QUICK_PRETRAINING if args.quick else pretraining.PretrainingSettings()
    print(f"{elapsed(started)} 2/6 stage 1: pretraining CLIP and AST on {settings.num_clips} clips of the synthetic "
          f"world's own pretrain split (seed {settings.seed}) into {pretrained_dir} (reused when up to date)",
          flush=True)
    stage_one = pretraining.pretrain_towers(pretrained_dir, settings, num_proc=args.jobs)
    print(f"{elapsed(started)} stage 1 ready (it took {sum(stage_one['seconds'].values()):.0f} s when it was "
          f"built: {stage_one['seconds']})", flush=True)
    timings["stage 1"] = time.time() - started - sum(timings.values())

    print(f"{elapsed(started)} 3/6 stage 2: caching the frames and the frozen AST's features in {cache_dir}, then "
          f"training {len(MODES)} gate modes × {len(seeds)} seeds from stage 1's towers, {epochs} epochs each, "
          f"{args.jobs} processes at a time (logs: {runs_dir}/*.log)", flush=True)
    cache_and_train(data_dir, pretrained_dir, runs_dir, cache_dir, seeds, epochs, args.jobs, started)
    timings["stage 2"] = time.time() - started - sum(timings.values())

    print(f"{elapsed(started)} 4/6 evaluating every run and stage 1's CLIP alone on the test split", flush=True)
    test_videos = load_benchmark("synthetic", data_dir, "test", view="videos")
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    # The libraries' own progress bars and messages (weight loading, embedding) go to a log, so that the report shows
    # one bar for the phase and nothing is left behind.
    with (open(os.path.join(runs_dir, "evaluate.log"), "w") as log, contextlib.redirect_stderr(log),
          tqdm(total=len(seeds) * len(MODES), desc="evaluating", unit="run", leave=False, file=sys.stdout) as bar):
        quality = pretraining.tower_quality(pretrained_dir, data_dir)
        floor = clip_floor(pretrained_dir, test_videos, cache_dir)
        for seed in seeds:
            for mode in MODES:
                results[mode].append(evaluate_run(os.path.join(runs_dir, f"{mode}-seed{seed}"), test_videos,
                                                  cache_dir, seed))
                bar.update()
    timings["evaluation"] = time.time() - started - sum(timings.values())

    print(f"{elapsed(started)} 5/6 robustness: {len(CONDITIONS)} corrupted versions of the test tracks, every "
          "AVIGATE and ungated model on each", flush=True)
    with open(os.path.join(runs_dir, "robustness.log"), "w") as log, contextlib.redirect_stderr(log):
        robust = evaluate_robustness(runs_dir, test_videos, cache_dir, seeds, args.jobs)
    robust_summary = robustness_summary(robust, results)
    timings["robustness"] = time.time() - started - sum(timings.values())

    model_dir = os.path.join(args.output_dir, "avigate-synthetic")
    print(f"{elapsed(started)} 6/6 saving the AVIGATE model of seed {seeds[0]} with its card and plots to "
          f"{model_dir}", flush=True)
    # best/ holds the run's train_args.json, from which the card describes the training.
    best_dir = os.path.join(runs_dir, f"learned-seed{seeds[0]}", "best")
    # Replaces only the model folder a previous demo wrote (marked as a best model), never a folder of the user's.
    with atomic_folder(model_dir, BEST_MODEL_KIND) as staging:
        shutil.copytree(best_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER_FILE))
    card = write_model_card(model_dir, eval_results=os.path.join(model_dir, "eval_results.json"))
    with open(card, "a", encoding="utf-8") as handle:
        handle.write(stage_one_card_section(stage_one, quality))
    plot_path = os.path.join(model_dir, "gates_and_training.png")
    plot(results, plot_path)
    robustness_path = os.path.join(model_dir, "robustness.png")
    plot_robustness(robust_summary, robust, results, floor, robustness_path)

    print(f"\n1. Stage 1, each tower on its own (test split, {len(test_videos['video_id'])} clips)")
    print_tower_quality(quality)
    print(f"\n2. Test retrieval, mean over seeds {seeds} (R@K in %)")
    print_results_table(results)
    print(f"\n3. Text→video R@1 per clip kind: mean over seeds, and AVIGATE's paired difference from each ablation "
          f"(mean ± standard error over {len(seeds)} seeds, same test clips)")
    differences = print_differences(results)
    print("\n4. The floor: stage 1's CLIP alone (mean-pooled frames, no fine-tuning, no sound) against each model")
    floor_table = print_floor(floor, results)
    print("\n5. What the models learned: % of test captions whose rank-1 clip matches the caption's clip on each "
          "attribute (sound: captions that name one)")
    attributes = print_attribute_table(results)
    print("\n6. Learned gates per clip kind (mean over seeds; |g| = how far the gate lets the sound in)")
    gate_summary = print_gate_table(results["learned"])
    print("\n7. Robustness: test text→video R@1 (all clips; per kind AVIGATE/ungated) with every track corrupted, "
          f"mean over seeds; AVIGATE − ungated paired over {len(seeds)} seeds (clips without a track keep none)")
    print_robustness(robust_summary, results, seeds)
    print("\n8. AVIGATE's mean |gate| per clip kind under each corruption")
    print_corruption_gates(robust_summary, gate_summary)
    print(f"\n9. Plots: R@1 against SNR {robustness_path}; gates per kind and training curves {plot_path}")

    print(f"\n10. Example searches over the test clips (AVIGATE, seed {seeds[0]}; gate = mean |g| of the clip)")
    first_caption = {}
    for captions, kind in zip(test_videos["captions"], test_videos["kind"]):
        first_caption.setdefault(kind, captions[0])
    example_searches(results["learned"][0], test_videos, [first_caption[kind] for kind in KINDS
                                                           if kind in first_caption and kind != AUDIO_NOISE])

    summary = {
        "seeds": seeds, "quick": args.quick, "epochs": epochs, "wall_time_s": round(time.time() - started, 1),
        "seconds_per_phase": {name: round(value, 1) for name, value in timings.items()},
        "load_average": os.getloadavg(),
        "stage_1": {"record": stage_one, "quality": quality},
        "clip_only_floor": floor_table,
        "results": {mode: {"overall": {d: mean_over_seeds(runs, "overall", d) for d in DIRECTIONS},
                           **{kind: {d: mean_over_seeds(runs, "by_kind", kind, d)
                                     for d in DIRECTIONS} for kind in runs[0]["by_kind"]},
                           "per_seed": [{"overall": run["overall"], "by_kind": run["by_kind"]} for run in runs]}
                    for mode, runs in results.items()},
        "text_to_video_R@1": differences,
        "attributes": attributes,
        "gates": gate_summary,
        "robustness": robust_summary,
        "robustness_per_seed": robust,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    phases = ", ".join(f"{name} {value:.0f} s" for name, value in timings.items())
    print(f"\nmodel, processor, card and plots: {model_dir}; all numbers: {args.output_dir}/results.json; "
          f"wall time {summary['wall_time_s']:.0f} s ({phases}; load average {load} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
