"""The checkpoints of a run's `output_dir` and its best model: the trainer state, atomic checkpoint folders, their
rotation (transformers' `save_total_limit` rule) and `best/`, which is a function of the saved trainer state.

Accelerate's own rotation (`ProjectConfiguration(total_limit=…)`) deletes the oldest checkpoints unconditionally and
writes in place; here a checkpoint is renamed into place whole (a kill -9 leaves the previous one), carries the
package's marker (nothing else is ever resumed from or removed), and the best epoch's is kept while `best/` may need
rebuilding from it. Inside each checkpoint, `Accelerator.save_state` / `load_state` hold the model, optimiser,
scheduler, sampler and random states.
"""

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file

from ..fingerprints import tensor_fingerprint
from ..folders import (
    MARKER_FILE,
    FolderOwnershipError,
    atomic_folder,
    is_owned,
    recover_interrupted_replace,
    remove_owned_folder,
)
from ..processors import AvigateProcessor
from .arguments import TrainArguments


# Folder kinds (see `modeling_avigate.folders`) of what a training run writes.
CHECKPOINT_KIND = "checkpoint"
BEST_MODEL_KIND = "best_model"
CHECKPOINT_PREFIX = "checkpoint-epoch-"
BEST_DIR = "best"
TRAINER_STATE_FILE = "trainer_state.json"
ACCELERATE_STATE_DIR = "accelerate_state"
METRICS_FILE = "metrics.json"


@dataclass
class TrainerState:
    """What `trainer_state.json` records: progress, the best epoch so far and its weights' checksum, and one record
    per checkpointed epoch."""

    epoch: int = -1  # the last finished epoch, 0-based
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None  # 1-based, as in the checkpoint names
    best_weights_checksum: str | None = None
    history: list[dict] = field(default_factory=list)

    def record_epoch(self, epoch: int, loss: float, gates_held_open: bool = False, split: str | None = None,
                     t2v: dict[str, float] | None = None) -> bool:
        """Record epoch `epoch` (0-based) with `split`'s text→video metrics `t2v`; return whether it is the best so far
        by R@1. Without a selection split every epoch is (so the last is kept: never select on the test split); an
        epoch trained with its gates held open never is (nor is it validated: its weights were trained for gates the
        model will not have)."""
        self.epoch = epoch
        record = {"epoch": epoch + 1, "step": self.global_step, "loss": loss}
        if gates_held_open:
            self.history.append({**record, "gates_held_open": True})
            return False
        is_best = t2v is None or self.best_metric is None or t2v["R@1"] > self.best_metric
        if t2v is not None:
            record.update({"split": split, **{f"t2v_{k}": v for k, v in t2v.items()}})
            if is_best:
                self.best_metric = t2v["R@1"]
        if is_best:
            self.best_epoch = epoch + 1
        self.history.append(record)
        return is_best

    def save(self, directory: str) -> None:
        with open(os.path.join(directory, TRAINER_STATE_FILE), "w") as handle:
            json.dump(dataclasses.asdict(self), handle, indent=2)

    @classmethod
    def load(cls, directory: str) -> "TrainerState":
        with open(os.path.join(directory, TRAINER_STATE_FILE)) as handle:
            return cls(**json.load(handle))


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


def is_evaluation_epoch(args: TrainArguments, epoch: int, first_epoch: int, reached_total_steps: bool) -> bool:
    """Whether `epoch` (0-based) ends with validation and a checkpoint: every `--eval_every_epochs`, the last epoch,
    the epoch that reaches `--max_train_steps`, and the last one `--stop_after_epochs` runs from `first_epoch` (so a
    resume loses nothing)."""
    stopping = args.stop_after_epochs is not None and epoch + 1 - first_epoch >= args.stop_after_epochs
    return (epoch + 1) % args.eval_every_epochs == 0 or epoch + 1 == args.epochs or reached_total_steps or stopping


def checkpoint_dir(output_dir: str, epoch: int) -> str:
    """Where epoch `epoch` (1-based) of a run in `output_dir` is saved."""
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{epoch}")


def checkpoint_epochs(output_dir: str) -> list[int]:
    """The epochs of `output_dir`'s checkpoint folders, ascending; folders without the package's checkpoint marker
    (a user's copy, another tool's, a killed save) are not counted."""
    if not os.path.isdir(output_dir):
        return []
    epochs = (name[len(CHECKPOINT_PREFIX):] for name in os.listdir(output_dir) if name.startswith(CHECKPOINT_PREFIX))
    return sorted(
        int(epoch) for epoch in epochs if epoch.isdigit() and is_owned(checkpoint_dir(output_dir, int(epoch)),
                                                                      CHECKPOINT_KIND)
    )


def latest_checkpoint(output_dir: str) -> str | None:
    """The `checkpoint-epoch-N` folder of `output_dir` with the highest N, or `None` when there is none."""
    epochs = checkpoint_epochs(output_dir)
    return checkpoint_dir(output_dir, epochs[-1]) if epochs else None


def checkpoints_to_delete(epochs: list[int], save_total_limit: int | None, best_epoch: int | None) -> list[int]:
    """The checkpoints `--save_total_limit` removes, with transformers' `Trainer` rule: keep the `save_total_limit`
    most recent, counting the best epoch's as the second most recent, so it is never removed (with a limit of 1 and a
    best epoch that is not the last, two are kept).

    Example:

    ```python
    >>> from modeling_avigate.training import checkpoints_to_delete
    >>> checkpoints_to_delete([1, 2, 3, 4], save_total_limit=1, best_epoch=2)
    [1, 3]
    >>> checkpoints_to_delete([1, 2, 3, 4], save_total_limit=2, best_epoch=4)
    [1, 2]
    ```
    """
    if save_total_limit is None:
        return []
    ordered = sorted(epochs)
    if best_epoch in ordered and best_epoch != ordered[-1]:
        ordered.remove(best_epoch)
        ordered.insert(len(ordered) - 1, best_epoch)
    keep = 2 if save_total_limit == 1 and best_epoch in ordered and ordered[-1] != best_epoch else save_total_limit
    return sorted(ordered[: max(len(ordered) - keep, 0)])


def rotate_checkpoints(output_dir: str, save_total_limit: int | None, best_epoch: int | None) -> None:
    """Remove the checkpoints `--save_total_limit` does not keep (never the best epoch's, never an unmarked one)."""
    for epoch in checkpoints_to_delete(checkpoint_epochs(output_dir), save_total_limit, best_epoch):
        remove_owned_folder(checkpoint_dir(output_dir, epoch), CHECKPOINT_KIND)


def weights_checksum(model_dir: str | os.PathLike) -> str:
    """SHA-256 of the tensors in `model_dir/model.safetensors` (names and values): the identity of a saved model that
    the trainer state and `metrics.json` record."""
    return tensor_fingerprint(load_file(os.path.join(model_dir, "model.safetensors")))


@contextlib.contextmanager
def shared_atomic_folder(accelerator: Accelerator, directory: str, kind: str) -> Iterator[str]:
    """[`atomic_folder`] opened by the main process, its staging path shared with every process; all of them write
    into it before the main process moves it into place."""
    with contextlib.ExitStack() as stack:
        staging = [stack.enter_context(atomic_folder(directory, kind)) if accelerator.is_main_process else None]
        broadcast_object_list(staging)
        yield staging[0]
        accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator: Accelerator, model: torch.nn.Module, processor: AvigateProcessor,
                    state: TrainerState, output_dir: str, is_best: bool) -> None:
    """Model + processor + Accelerate state + trainer state (recording the weights checksum) of epoch `state.epoch`,
    written to a marked staging folder and renamed into place as `checkpoint-epoch-N`."""
    with shared_atomic_folder(accelerator, checkpoint_dir(output_dir, state.epoch + 1), CHECKPOINT_KIND) as staging:
        accelerator.save_state(os.path.join(staging, ACCELERATE_STATE_DIR))
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(staging)
            processor.save_pretrained(staging)
            checksum = weights_checksum(staging)
            state.history[-1]["weights_checksum"] = checksum
            if is_best:
                state.best_weights_checksum = checksum
            state.save(staging)


def load_checkpoint(accelerator: Accelerator, checkpoint: str) -> TrainerState:
    """Restore the Accelerate state (model, optimiser, scheduler, sampler, random states) of `checkpoint`; return its
    trainer state."""
    accelerator.load_state(os.path.join(checkpoint, ACCELERATE_STATE_DIR))
    return TrainerState.load(checkpoint)


def ensure_best_model(output_dir: str, state: TrainerState) -> None:
    """Make `output_dir/best` hold the weights the trainer state names: rebuilt atomically from the best epoch's
    checkpoint when missing or stale (then `metrics.json`, which described the old weights, is removed)."""
    if state.best_epoch is None:
        return
    best_dir = os.path.join(output_dir, BEST_DIR)
    recover_interrupted_replace(best_dir)
    if is_owned(best_dir, BEST_MODEL_KIND) and weights_checksum(best_dir) == state.best_weights_checksum:
        return
    source = checkpoint_dir(output_dir, state.best_epoch)
    if not is_owned(source, CHECKPOINT_KIND):
        raise FolderOwnershipError(f"cannot rebuild {best_dir}: the best epoch's checkpoint {source} is missing")
    with atomic_folder(best_dir, BEST_MODEL_KIND) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(ACCELERATE_STATE_DIR, MARKER_FILE))
    metrics_path = os.path.join(output_dir, METRICS_FILE)
    if os.path.isfile(metrics_path):
        os.remove(metrics_path)
