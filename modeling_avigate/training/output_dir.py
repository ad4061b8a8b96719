"""Which run an `output_dir` holds, decided before anything is written, following transformers' `Trainer` examples.

`output_dir` holds a run record (`train_args.json` and the package's `training_run` marker). A run is "this run" when
its record's settings (every argument except those in `RUN_INDEPENDENT_ARGUMENTS`) equal the current ones; then the
run resumes from its latest checkpoint. An `output_dir` holding another run is refused unless
`--overwrite_output_dir true`, which removes only the package's checkpoint and best-model folders and its
`metrics.json`. A non-empty folder that holds no run (the user's files) is never used.
"""

import dataclasses
import json
import logging
import os

from ..folders import (
    FolderOwnershipError,
    check_output_separate,
    is_owned,
    remove_owned_folder,
    write_json_atomically,
    write_marker,
)
from ..hub.model_card import write_model_card
from .arguments import RUN_INDEPENDENT_ARGUMENTS, TrainArguments
from .checkpoints import (
    BEST_DIR,
    BEST_MODEL_KIND,
    CHECKPOINT_KIND,
    METRICS_FILE,
    checkpoint_dir,
    checkpoint_epochs,
    latest_checkpoint,
)


logger = logging.getLogger("avigate.train")

TRAINING_RUN_KIND = "training_run"
RUN_RECORD = "train_args.json"
EVAL_RESULTS_FILE = "eval_results.json"
CARD_RECORD_KEYS = ("dataset", "split", "selected_on", "text_to_video", "video_to_text", "test_time_renormalization")


def run_settings(args: TrainArguments) -> dict:
    """The arguments that decide what a run computes, as they read back from its JSON run record."""
    settings = {key: value for key, value in dataclasses.asdict(args).items() if key not in RUN_INDEPENDENT_ARGUMENTS}
    return json.loads(json.dumps(settings))


def recorded_run_differences(args: TrainArguments) -> list[str] | None:
    """`None` when `output_dir` is not a training run's folder, else the settings in which its recorded run differs
    (all of them when a kill left the marker without the record)."""
    if not is_owned(args.output_dir, TRAINING_RUN_KIND):
        return None
    record_path = os.path.join(args.output_dir, RUN_RECORD)
    recorded = {}
    if os.path.isfile(record_path):
        with open(record_path) as handle:
            recorded = json.load(handle)
    current = run_settings(args)
    return sorted(key for key in current.keys() | (recorded.keys() - RUN_INDEPENDENT_ARGUMENTS)
                  if current.get(key) != recorded.get(key))


def plan_output_dir(args: TrainArguments) -> str | None:
    """Decide, before anything is written, whether `output_dir` may be used; return the checkpoint to resume from.

    Raises [`FolderOwnershipError`] (one line naming the folder) for an `output_dir` that holds another run (unless
    `--overwrite_output_dir`), or that is a file or a non-empty folder holding no run (always).
    """
    output_dir, resume = args.output_dir, args.resume_from_checkpoint
    inputs = [args.data_dir] + ([resume] if resume and resume != "latest" else [])
    check_output_separate(output_dir, inputs, "--output_dir")
    if args.overwrite_output_dir and resume:
        raise FolderOwnershipError("--overwrite_output_dir starts afresh and --resume_from_checkpoint continues: "
                                   "choose one")
    if resume and resume != "latest" and not is_owned(resume, CHECKPOINT_KIND):
        raise FolderOwnershipError(f"--resume_from_checkpoint {resume}: not a checkpoint folder written by "
                                   "examples/train.py")
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise FolderOwnershipError(f"--output_dir {output_dir} exists and is not a folder")
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None if resume == "latest" else resume
    differences = recorded_run_differences(args)
    if differences is None:
        raise FolderOwnershipError(f"--output_dir {output_dir} is not empty and holds no training run; choose an "
                                   "empty or new folder")
    if differences and not args.overwrite_output_dir:
        raise FolderOwnershipError(
            f"--output_dir {output_dir} holds another run (its {RUN_RECORD} differs in {', '.join(differences)}); "
            "pass --overwrite_output_dir true to replace its checkpoints, or choose another folder")
    if args.overwrite_output_dir:
        return None
    if resume in (None, "latest"):
        resume = latest_checkpoint(output_dir)
        if resume and not args.resume_from_checkpoint:
            logger.info("%s holds this run's checkpoints: resuming from %s (--overwrite_output_dir true starts "
                        "afresh)", output_dir, resume)
    return resume


def claim_output_dir(args: TrainArguments) -> None:
    """Mark `output_dir` as this run's and record its arguments; `--overwrite_output_dir` first removes the package's
    checkpoint and best-model folders and `metrics.json` (nothing else). Call after [`plan_output_dir`]."""
    output_dir = args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    if args.overwrite_output_dir and is_owned(output_dir, TRAINING_RUN_KIND):
        for epoch in checkpoint_epochs(output_dir):
            remove_owned_folder(checkpoint_dir(output_dir, epoch), CHECKPOINT_KIND)
        best_dir = os.path.join(output_dir, BEST_DIR)
        if is_owned(best_dir, BEST_MODEL_KIND):
            remove_owned_folder(best_dir, BEST_MODEL_KIND)
        if os.path.isfile(os.path.join(output_dir, METRICS_FILE)):
            os.remove(os.path.join(output_dir, METRICS_FILE))
    write_marker(output_dir, TRAINING_RUN_KIND)
    write_json_atomically(os.path.join(output_dir, RUN_RECORD), dataclasses.asdict(args))


def write_results(args: TrainArguments, result: dict) -> None:
    """The final evaluation of `best/`: `metrics.json`, and beside the best model the record `modeling_avigate.hub`
    turns into the model card's model-index, this run's arguments (from which the card describes its initialisation,
    audio weights and recipe) and the card itself."""
    best_dir = os.path.join(args.output_dir, BEST_DIR)
    write_json_atomically(os.path.join(best_dir, EVAL_RESULTS_FILE), {key: result[key] for key in CARD_RECORD_KEYS})
    write_json_atomically(os.path.join(best_dir, RUN_RECORD), dataclasses.asdict(args))
    write_model_card(best_dir)
    write_json_atomically(os.path.join(args.output_dir, METRICS_FILE), result)
