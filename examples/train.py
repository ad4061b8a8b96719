#!/usr/bin/env python
"""Train and evaluate AVIGATE with Accelerate.

    accelerate launch examples/train.py --config examples/configs/synthetic.yaml [--key value ...]
    python examples/train.py --config examples/configs/synthetic.yaml --epochs 1       # one process

The YAML file holds the training arguments (the fields of `TrainArguments`, parsed by `transformers.HfArgumentParser`)
plus two optional sections: `model` (keyword arguments of `AvigateConfig` for a randomly initialised model) and
`processor` (keyword arguments of `AvigateProcessor.from_settings`). Command-line `--key value` pairs override the
YAML's top-level keys (`null` clears an optional one); `--model.key value`, `--processor.key value` and
`--benchmark_kwargs.key value` override keys of those sections (`--model.text_config.hidden_size 32` reaches nested
ones; values are read as YAML).

Every epoch (every `--eval_every_epochs N`, and the last) is validated and writes `output_dir/checkpoint-epoch-N`
(model + processor, loadable by `AvigateModel.from_pretrained`, the Accelerate state and `trainer_state.json`)
atomically; `--save_total_limit N` keeps N of them (transformers' rule: the
best epoch's is always kept; the default 1 keeps the best and the last). The best epoch by the selection split's
text→video R@1 is copied to `output_dir/best`, and `output_dir/metrics.json` holds the final evaluation of exactly
those weights (their checksum is recorded) in the format `modeling_avigate.hub` turns into a model card. With
`--cache_only true` the script builds the `--frame_cache` / `--audio_cache` folders it was given and exits.

Output folders follow transformers' `Trainer` examples. `output_dir` holds a run record (`train_args.json` and the
package's `training_run` marker). A run is "this run" when its record's settings (every argument except the ones in
`RUN_INDEPENDENT_ARGUMENTS`: paths of caches, logging, worker counts, when to stop) equal the current ones; then the
script resumes from its latest checkpoint. An `output_dir` holding another run, or files of no run, is refused unless
`--overwrite_output_dir true` (which removes only the package's checkpoint and best-model folders and its
`metrics.json`, never other files) or, for a folder of no run, `--resume_from_checkpoint PATH`. The best model is a
function of the saved trainer state: on resume and at the end `best/` is rebuilt from the recorded best epoch's
checkpoint whenever its weights checksum differs from the recorded one.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, broadcast_object_list, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import CLIPImageProcessorPil, CLIPTokenizer, HfArgumentParser, get_cosine_schedule_with_warmup

from modeling_avigate import AvigateConfig, AvigateModel, AvigateProcessor
from modeling_avigate.data import load_benchmark
from modeling_avigate.data.synthetic import synthetic_tokenizer
from modeling_avigate.processors import AvigateFeatureExtractor, MediaError
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.fast_inference import EncoderPrecision
from modeling_avigate.hub.model_card import write_model_card
from modeling_avigate.folders import (
    MARKER_FILE,
    FolderOwnershipError,
    atomic_folder,
    check_output_separate,
    is_owned,
    recover_interrupted_replace,
    remove_owned_folder,
    write_marker,
)
from modeling_avigate.training import (
    BEST_MODEL_KIND,
    CHECKPOINT_KIND,
    TRAINING_RUN_KIND,
    LearningRates,
    NonFiniteLossError,
    build_parameter_groups,
    checkpoint_dir,
    checkpoint_epochs,
    checkpoints_to_delete,
    contrastive_loss_from_outputs,
    freeze_for_training,
    hold_gates_open,
    latest_checkpoint,
    weights_checksum,
    write_json_atomically,
)
from modeling_avigate.pipeline import (
    HardNegativeSampler,
    TrainingPairs,
    collate_training_pairs,
    prepare_feature_caches,
)


logger = logging.getLogger("avigate.train")

CARD_RECORD_KEYS = ("dataset", "split", "selected_on", "text_to_video", "video_to_text", "test_time_renormalization")


@dataclass
class TrainArguments:
    """Everything `examples/train.py` reads from its YAML config and command line."""

    benchmark: str = field(default="synthetic", metadata={"help": "benchmark loader name (`synthetic`, `msrvtt`, ...)"})
    data_dir: str = field(default="outputs/synthetic_data", metadata={"help": "the benchmark's folder"})
    train_split: str = field(default="train", metadata={"help": "split trained on"})
    selection_split: str | None = field(
        default="val", metadata={"help": "split selecting the best epoch; null keeps the last epoch"}
    )
    test_split: str = field(default="test", metadata={"help": "split of the final evaluation"})
    output_dir: str = field(default="outputs/avigate", metadata={"help": "checkpoints, best/, metrics.json, logs"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "start afresh in an output_dir holding another run (removes only the "
                                         "package's checkpoint and best-model folders and metrics.json)"}
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "a trained AVIGATE model to fine-tune"})
    clip_name_or_path: str | None = field(default=None, metadata={"help": "CLIP checkpoint for the towers"})
    ast_name_or_path: str | None = field(default=None, metadata={"help": "AST checkpoint for the audio encoder"})
    gate_mode: str | None = field(default=None, metadata={"help": "learned, closed (visual only) or open"})
    epochs: int = field(default=5, metadata={"help": "training epochs"})
    batch_size: int = field(default=128, metadata={"help": "contrastive batch over all processes"})
    learning_rate: float = field(default=1e-4, metadata={"help": "rate of the new modules"})
    clip_lr_multiplier: float = field(default=1e-3, metadata={"help": "CLIP towers' rate / learning_rate"})
    query_lr_multiplier: float = field(default=100.0, metadata={"help": "audio queries' rate / learning_rate"})
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    warmup_proportion: float = field(default=0.1, metadata={"help": "share of the steps in linear warmup"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm; 0 disables"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "contrastive batches per optimiser step"})
    mixed_precision: str = field(default="auto", metadata={"help": "no, fp16, bf16, or auto"})
    freeze_clip_embeddings: bool = field(default=True, metadata={"help": "keep CLIP's embeddings frozen"})
    train_audio_encoder: bool = field(default=False, metadata={"help": "train the AST encoder too"})
    audio_cache: str | None = field(default=None, metadata={"help": "folder of the frozen AST's cached states"})
    frame_cache: str | None = field(default=None, metadata={"help": "folder of cached decoded frames"})
    cache_only: bool = field(default=False, metadata={"help": "build the caches and exit"})
    encoder_precision: EncoderPrecision = field(
        default="fp32", metadata={"help": "precision of the frozen vision and audio encoders while caching and "
                                          "evaluating: fp32, int8 or int8-audio (CPU) or bf16 (GPU)"}
    )
    num_workers: int = field(default=0, metadata={"help": "data loader workers"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    max_train_steps: int | None = field(default=None, metadata={"help": "stop after this many optimiser steps"})
    stop_after_epochs: int | None = field(
        default=None, metadata={"help": "stop after this many epochs of this invocation (resume later)"}
    )
    open_gates_proportion: float = field(
        default=0.0, metadata={"help": "share of the epochs (rounded) that a learned-gate model trains first with "
                                       "every gate held at 1 (ungated fusion) before its gates take over; they are "
                                       "checkpointed but not validated or selected"}
    )
    eval_every_epochs: int = field(
        default=1, metadata={"help": "validate, select the best model and checkpoint every N epochs and after the "
                                     "last (an interrupted run resumes from the last of these)"}
    )
    save_total_limit: int | None = field(
        default=1, metadata={"help": "checkpoints kept, the best epoch's always among them (transformers' rule); "
                                     "null in the config keeps all"}
    )
    hard_negative_groups: list[str] | None = field(
        default=None, metadata={"help": "look-alike groups that fill each batch, coarse to fine, each "
                                        "`COLUMN[,COLUMN...]:SIZE` (e.g. `color,background:8 shape:4`: groups of 8 "
                                        "pairs sharing colour and background, made of runs of 4 sharing the shape "
                                        "too); the first size must divide the batch per process"}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "evaluation and caching batch size"})
    strict: bool = field(default=False, metadata={"help": "fail on an unreadable video instead of skipping it"})
    report_to: str | None = field(default="tensorboard", metadata={"help": "Accelerate tracker; null for none"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or `latest` for this run's newest"}
    )
    benchmark_kwargs: dict = field(default_factory=dict, metadata={"help": "extra benchmark loader arguments"})
    model: dict = field(default_factory=dict, metadata={"help": "AvigateConfig arguments of a random model"})
    processor: dict = field(default_factory=dict, metadata={"help": "processor_from_settings arguments"})

    def __post_init__(self):
        # `--x null` on the command line arrives as a string; YAML's null is already None. (The annotations, not
        # `dataclasses.fields`, whose types HfArgumentParser narrows in place.)
        for name, annotation in typing.get_type_hints(type(self)).items():
            if getattr(self, name) in NULL_STRINGS and type(None) in typing.get_args(annotation):
                setattr(self, name, None)
        if not 0 <= self.open_gates_proportion < 1:
            raise SystemExit(f"--open_gates_proportion must be in [0, 1), got {self.open_gates_proportion}")
        if self.eval_every_epochs < 1:
            raise SystemExit(f"--eval_every_epochs must be at least 1, got {self.eval_every_epochs}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise SystemExit(f"--save_total_limit must be at least 1 (or null to keep all), got "
                             f"{self.save_total_limit}")


NULL_STRINGS = ("null", "None", "none", "~")
SECTIONS = ("model", "processor", "benchmark_kwargs")
# Arguments that do not change what a run computes: a run record differing only in these is still "this run".
RUN_INDEPENDENT_ARGUMENTS = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_total_limit", "stop_after_epochs",
    "cache_only", "num_workers", "eval_batch_size", "report_to", "audio_cache", "frame_cache", "strict",
})
# Arguments added after run records existed, with the value every earlier run had: a record without one is read
# as holding that value.
ADDED_SETTINGS = {"encoder_precision": "fp32", "hard_negative_groups": None, "eval_every_epochs": 1,
                  "open_gates_proportion": 0.0}
RUN_RECORD = "train_args.json"
METRICS_FILE = "metrics.json"


def parse_arguments(argv: list[str] | None = None) -> TrainArguments:
    """`--config FILE` supplies the defaults, the command line overrides them."""
    parser = HfArgumentParser(
        TrainArguments, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file with TrainArguments fields and `model` / `processor` sections")
    config_path = parser.parse_known_args(argv)[0].config
    if config_path:
        parser.set_defaults(**read_config(config_path))
    args, _, rest = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    apply_section_overrides(args, rest)
    return args


def read_config(path: str) -> dict:
    with open(path) as handle:
        values = yaml.safe_load(handle) or {}
    unknown = set(values) - {spec.name for spec in dataclasses.fields(TrainArguments)}
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}")
    return values


def apply_section_overrides(args: TrainArguments, rest: list[str]) -> None:
    """Apply `--model.key value` style pairs (what HfArgumentParser left over) to the dictionary sections."""
    if len(rest) % 2:
        raise SystemExit(f"unrecognised arguments {rest}; section overrides are `--section.key value` pairs")
    for flag, text in zip(rest[::2], rest[1::2]):
        section, _, key_path = flag.removeprefix("--").partition(".")
        if not flag.startswith("--") or section not in SECTIONS or not key_path:
            raise SystemExit(f"unrecognised argument {flag}; see --help (sections: {', '.join(SECTIONS)})")
        *parents, key = key_path.split(".")
        target = getattr(args, section)
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = yaml.safe_load(text)


# -- model and processor ------------------------------------------------------------------------------------------


def build_model(args: TrainArguments, processor: AvigateProcessor) -> AvigateModel:
    overrides = dict(args.model)
    if args.gate_mode is not None:
        overrides["gate_mode"] = args.gate_mode
    if args.model_name_or_path:
        return AvigateModel.from_pretrained(args.model_name_or_path, **overrides)
    if args.clip_name_or_path and args.ast_name_or_path:
        return AvigateModel.from_clip_ast_pretrained(args.clip_name_or_path, args.ast_name_or_path, **overrides)
    # A randomly initialised text tower takes its vocabulary and special tokens from the processor's tokenizer.
    tokenizer = processor.tokenizer
    overrides["text_config"] = {
        **overrides.get("text_config", {}), "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
    }
    return AvigateModel(AvigateConfig(**overrides))


def processor_from_settings(
    tokenizer: str = "openai/clip-vit-base-patch32", image_size: int = 224, **processor_kwargs
) -> AvigateProcessor:
    """A processor for a randomly initialised model: CLIP's frame pipeline at `image_size`, AVIGATE's fbank, and the
    tokenizer `tokenizer` (a path or Hub id, or `"synthetic"` for the synthetic benchmark's vocabulary)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    text_tokenizer = synthetic_tokenizer() if tokenizer == "synthetic" else CLIPTokenizer.from_pretrained(tokenizer)
    return AvigateProcessor(image_processor, AvigateFeatureExtractor(), text_tokenizer, **processor_kwargs)


def build_processor(args: TrainArguments) -> AvigateProcessor:
    if args.model_name_or_path and os.path.isfile(os.path.join(args.model_name_or_path, "processor_config.json")):
        return AvigateProcessor.from_pretrained(args.model_name_or_path)
    return processor_from_settings(**args.processor)


# -- output folder ------------------------------------------------------------------------------------------------


def run_settings(args: TrainArguments) -> dict:
    """The arguments that decide what a run computes, as they read back from its JSON run record."""
    settings = {key: value for key, value in dataclasses.asdict(args).items() if key not in RUN_INDEPENDENT_ARGUMENTS}
    return json.loads(json.dumps(settings))


def recorded_run_differences(args: TrainArguments) -> list[str] | None:
    """`None` when `output_dir` holds no run record, else the settings in which the recorded run differs."""
    record_path = os.path.join(args.output_dir, RUN_RECORD)
    if not is_owned(args.output_dir, TRAINING_RUN_KIND) or not os.path.isfile(record_path):
        return None
    with open(record_path) as handle:
        recorded = json.load(handle)
    current = run_settings(args)
    return sorted(key for key in current.keys() | (recorded.keys() - RUN_INDEPENDENT_ARGUMENTS)
                  if current.get(key) != recorded.get(key, ADDED_SETTINGS.get(key)))


def plan_output_dir(args: TrainArguments) -> str | None:
    """Decide, before anything is written, whether `output_dir` may be used; return the checkpoint to resume from.

    Raises [`FolderOwnershipError`] (one line naming the folder) for an `output_dir` of another run or of files of no
    run, unless `--overwrite_output_dir` (or, for the latter, an explicit `--resume_from_checkpoint PATH`) says so.
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
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None if resume == "latest" else resume
    differences = recorded_run_differences(args)
    if differences is None:
        collisions = [name for name in (RUN_RECORD, METRICS_FILE) if os.path.exists(os.path.join(output_dir, name))]
        if collisions or not (args.overwrite_output_dir or (resume and resume != "latest")):
            advice = (f"it has its own {', '.join(collisions)}" if collisions
                      else "or pass --overwrite_output_dir true to write beside its files")
            raise FolderOwnershipError(f"--output_dir {output_dir} is not empty and holds no training run; choose an "
                                       f"empty or new folder ({advice})")
        return resume
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
    checkpoint and best-model folders and `metrics.json` (nothing else)."""
    output_dir = args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    if args.overwrite_output_dir:
        for epoch in checkpoint_epochs(output_dir):
            remove_owned_folder(checkpoint_dir(output_dir, epoch), CHECKPOINT_KIND)
        best_dir = os.path.join(output_dir, "best")
        if is_owned(best_dir, BEST_MODEL_KIND):
            remove_owned_folder(best_dir, BEST_MODEL_KIND)
        if is_owned(output_dir, TRAINING_RUN_KIND) and os.path.isfile(os.path.join(output_dir, METRICS_FILE)):
            os.remove(os.path.join(output_dir, METRICS_FILE))
    write_marker(output_dir, TRAINING_RUN_KIND)
    write_json_atomically(os.path.join(output_dir, RUN_RECORD), dataclasses.asdict(args))


# -- checkpoints --------------------------------------------------------------------------------------------------


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


def save_checkpoint(run: "TrainingRun", is_best: bool) -> None:
    """Model + processor + Accelerate state + trainer state (recording the weights checksum), written to a marked
    staging folder and renamed into place as `checkpoint-epoch-N`."""
    accelerator, state = run.accelerator, run.state
    directory = checkpoint_dir(run.args.output_dir, state["epoch"] + 1)
    with shared_atomic_folder(accelerator, directory, CHECKPOINT_KIND) as staging:
        accelerator.save_state(os.path.join(staging, "accelerate_state"))
        if accelerator.is_main_process:
            accelerator.unwrap_model(run.model).save_pretrained(staging)
            run.processor.save_pretrained(staging)
            checksum = weights_checksum(staging)
            state["history"][-1]["weights_checksum"] = checksum
            if is_best:
                state["best_weights_checksum"] = checksum
            with open(os.path.join(staging, "trainer_state.json"), "w") as handle:
                json.dump(state, handle, indent=2)


def ensure_best_model(output_dir: str, state: dict) -> None:
    """Make `output_dir/best` hold the weights the trainer state names: rebuilt atomically from the best epoch's
    checkpoint when missing or stale (then `metrics.json`, which described the old weights, is removed)."""
    if state["best_epoch"] is None:
        return
    best_dir = os.path.join(output_dir, "best")
    recover_interrupted_replace(best_dir)
    if is_owned(best_dir, BEST_MODEL_KIND) and weights_checksum(best_dir) == state.get("best_weights_checksum"):
        return
    source = checkpoint_dir(output_dir, state["best_epoch"])
    if not is_owned(source, CHECKPOINT_KIND):
        raise FolderOwnershipError(f"cannot rebuild {best_dir}: the best epoch's checkpoint {source} is missing")
    with atomic_folder(best_dir, BEST_MODEL_KIND) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("accelerate_state", MARKER_FILE))
    metrics_path = os.path.join(output_dir, METRICS_FILE)
    if os.path.isfile(metrics_path):
        os.remove(metrics_path)


def rotate_checkpoints(output_dir: str, save_total_limit: int | None, best_epoch: int | None) -> None:
    """Remove the checkpoints `--save_total_limit` does not keep (never the best epoch's, never an unmarked one)."""
    for epoch in checkpoints_to_delete(checkpoint_epochs(output_dir), save_total_limit, best_epoch):
        remove_owned_folder(checkpoint_dir(output_dir, epoch), CHECKPOINT_KIND)


# -- training steps -----------------------------------------------------------------------------------------------


@dataclass
class TrainingRun:
    """What the steps of one training run share."""

    args: TrainArguments
    accelerator: Accelerator
    processor: AvigateProcessor
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    caches: dict = field(default_factory=dict)
    loader: DataLoader | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    total_steps: int = 0
    epochs: int = 0  # the epochs the run trains: `--epochs`, or fewer when `--max_train_steps` ends it sooner
    state: dict = field(default_factory=lambda: {
        "epoch": -1, "global_step": 0, "best_metric": None, "best_epoch": None, "best_weights_checksum": None,
        "history": [],
    })


def resolve_mixed_precision(requested: str) -> str:
    """`auto`: what `accelerate launch` was told, else bf16 autocast where the GPU supports it, else fp32."""
    if requested != "auto":
        return requested
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def build_accelerator(args: TrainArguments) -> Accelerator:
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    if args.batch_size % accelerator.num_processes:
        raise SystemExit(f"--batch_size {args.batch_size} must be divisible by {accelerator.num_processes} processes")
    if args.audio_cache and args.train_audio_encoder:
        raise SystemExit("--audio_cache stores the frozen AST's output: it cannot be used with --train_audio_encoder")
    return accelerator


def build(args: TrainArguments, accelerator: Accelerator) -> TrainingRun:
    """Processor, model (frozen as the recipe says, on the device) and AdamW over the recipe's parameter groups."""
    set_seed(args.seed)
    processor = build_processor(args)
    model = build_model(args, processor)
    freeze_for_training(model, args.train_audio_encoder, args.freeze_clip_embeddings)
    rates = LearningRates(args.learning_rate, args.clip_lr_multiplier, args.query_lr_multiplier, args.weight_decay)
    groups = build_parameter_groups(model, rates)
    # foreach: on CPU torch defaults to a Python loop over the tensors; the foreach kernels give the same weights,
    # bit for bit, in less time per step.
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k not in ("names", "family")} for g in groups],
                                  foreach=True)
    model.to(accelerator.device)
    return TrainingRun(args, accelerator, processor, model, optimizer)


def build_data(run: TrainingRun) -> None:
    """Feature caches (the main process builds whatever is missing; the others open the result) and the training
    loader over (caption, video) pairs."""
    args, accelerator = run.args, run.accelerator
    all_videos = [load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
                  for split in {args.train_split, args.selection_split or args.test_split, args.test_split}]
    kwargs = dict(frame_cache=args.frame_cache, audio_cache=args.audio_cache, batch_size=args.eval_batch_size,
                  num_workers=args.num_workers, device=accelerator.device, strict=args.strict,
                  encoder_precision=args.encoder_precision)
    if accelerator.is_main_process:
        run.caches = prepare_feature_caches(run.model, run.processor, all_videos, **kwargs)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        run.caches = prepare_feature_caches(run.model, run.processor, all_videos, open_only=True, **kwargs)
    if args.cache_only:
        return
    pairs = load_benchmark(args.benchmark, args.data_dir, args.train_split, view="pairs", **args.benchmark_kwargs)
    dataset = TrainingPairs(pairs, run.processor, frame_cache=run.caches.get("frames"),
                            audio_cache=run.caches.get("audio"), strict=args.strict)
    per_process = args.batch_size // accelerator.num_processes
    sampler = hard_negative_sampler(dataset, args.hard_negative_groups, per_process, args.seed)
    run.loader = DataLoader(dataset, batch_size=per_process, shuffle=sampler is None, sampler=sampler,
                            drop_last=True, num_workers=args.num_workers,
                            collate_fn=collate_training_pairs(run.processor))


def hard_negative_sampler(dataset: TrainingPairs, groups: list[str] | None, per_process: int,
                          seed: int) -> HardNegativeSampler | None:
    """The sampler of `--hard_negative_groups` (None without them); each level's key holds its own columns and those
    of the coarser levels."""
    if not groups:
        return None
    specs = [spec.rpartition(":") for spec in groups]
    for spec, (names, _, size) in zip(groups, specs):
        if not names or not size.isdigit():
            raise SystemExit(f"--hard_negative_groups: {spec!r} is not COLUMN[,COLUMN...]:SIZE")
    if per_process % int(specs[0][2]):
        raise SystemExit(f"--hard_negative_groups: the first group size ({specs[0][2]}) must divide the batch per "
                         f"process ({per_process})")
    levels, columns = [], []
    try:
        for names, _, size in specs:
            columns = columns + names.split(",")  # a finer level's key holds the coarser levels' columns too
            levels.append((dataset.column_values(columns), int(size)))
        return HardNegativeSampler(levels, seed=seed)
    except ValueError as error:  # a missing column, or sizes that do not nest
        raise SystemExit(f"--hard_negative_groups: {error}") from None


def prepare(run: TrainingRun) -> None:
    """The cosine schedule over the run's optimiser steps, everything wrapped by Accelerate, trackers started."""
    args, accelerator = run.args, run.accelerator
    steps_per_epoch = math.ceil(len(run.loader) / args.gradient_accumulation_steps)
    run.total_steps = args.max_train_steps or steps_per_epoch * args.epochs
    run.epochs = min(args.epochs, math.ceil(run.total_steps / steps_per_epoch))
    scheduler = get_cosine_schedule_with_warmup(run.optimizer, int(args.warmup_proportion * run.total_steps),
                                                run.total_steps)
    run.model, run.optimizer, run.loader, run.scheduler = accelerator.prepare(
        run.model, run.optimizer, run.loader, scheduler
    )
    accelerator.init_trackers("avigate", config={k: v for k, v in dataclasses.asdict(args).items()
                                                  if isinstance(v, (int, float, str, bool))})
    logger.info(
        "%d pairs, contrastive batch %d (%d per process × %d processes; gradient accumulation %d sums gradients of "
        "separate contrastive batches), %d optimiser steps", len(run.loader.dataset), args.batch_size,
        args.batch_size // accelerator.num_processes, accelerator.num_processes, args.gradient_accumulation_steps,
        run.total_steps,
    )


def resume(run: TrainingRun, checkpoint: str | None) -> None:
    """Restore the Accelerate and trainer state of `checkpoint`, then make `best/` match that state."""
    if checkpoint:
        run.accelerator.load_state(os.path.join(checkpoint, "accelerate_state"))
        with open(os.path.join(checkpoint, "trainer_state.json")) as handle:
            run.state = json.load(handle)
        logger.info("resumed from %s (epoch %d done)", checkpoint, run.state["epoch"] + 1)
    if run.accelerator.is_main_process:
        ensure_best_model(run.args.output_dir, run.state)
    run.accelerator.wait_for_everyone()


def train_epoch(run: TrainingRun, epoch: int) -> float:
    """One pass over the loader (stopping at `total_steps`); returns the last loss."""
    args, accelerator, model, state = run.args, run.accelerator, run.model, run.state
    model.train()
    run.loader.set_epoch(epoch)
    progress = tqdm(run.loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not accelerator.is_main_process)
    for batch in progress:
        with accelerator.accumulate(model):
            outputs = model(**batch)
            loss = contrastive_loss_from_outputs(outputs, accelerator.unwrap_model(model).config)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {state['global_step']} (epoch {epoch + 1}); the last good "
                    f"checkpoint is {latest_checkpoint(args.output_dir)}"
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
        if accelerator.sync_gradients:
            state["global_step"] += 1
            logs = {"loss": loss.item(), "lr": run.scheduler.get_last_lr()[0],
                    "attn_gate": outputs.attn_gates.mean().item(), "ffn_gate": outputs.ffn_gates.mean().item()}
            progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
            accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=state["global_step"])
            if state["global_step"] >= run.total_steps:
                break
    return loss.item()


def evaluate_split(run: TrainingRun, model: torch.nn.Module, split: str) -> dict:
    args = run.args
    videos = load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
    return evaluate_retrieval(
        run.accelerator.unwrap_model(model), run.processor, videos, batch_size=args.eval_batch_size,
        num_workers=args.num_workers, frame_cache=run.caches.get("frames"), audio_cache=run.caches.get("audio"),
        device=run.accelerator.device, encoder_precision=args.encoder_precision,
    )


def gates_held_open(run: TrainingRun, epoch: int) -> bool:
    """Whether `epoch` (0-based) trains with the gates held open: one of the first `--open_gates_proportion` of the
    run's epochs (never its last, so it ends with a model to select) of a learned-gate model (visual-only and
    ungated runs have no gates to hold)."""
    held_epochs = min(round(run.args.open_gates_proportion * run.epochs), run.epochs - 1)
    return epoch < held_epochs and run.accelerator.unwrap_model(run.model).config.gate_mode == "learned"


def evaluate_and_select(run: TrainingRun, epoch: int, loss: float) -> bool:
    """Record the epoch in the trainer state; whether it is the best so far by the selection split's text→video R@1
    (without a selection split every epoch is, so the last is kept: never select on the test split)."""
    args, state = run.args, run.state
    state["epoch"] = epoch
    record = {"epoch": epoch + 1, "step": state["global_step"], "loss": loss}
    if gates_held_open(run, epoch):
        # Weights trained for open gates: their validation would not describe the model they become, a learned-gate
        # one, so they are never the best.
        state["history"].append({**record, "gates_held_open": True})
        return False
    is_best = True
    if args.selection_split:
        t2v = evaluate_split(run, run.model, args.selection_split)["text_to_video"]
        run.accelerator.log({f"{args.selection_split}/t2v_{k}": v for k, v in t2v.items()}, step=state["global_step"])
        logger.info("epoch %d %s text→video %s", epoch + 1, args.selection_split, t2v)
        record.update({"split": args.selection_split, **{f"t2v_{k}": v for k, v in t2v.items()}})
        is_best = state["best_metric"] is None or t2v["R@1"] > state["best_metric"]
        if is_best:
            state["best_metric"] = t2v["R@1"]
    if is_best:
        state["best_epoch"] = epoch + 1
    state["history"].append(record)
    return is_best


def save(run: TrainingRun, is_best: bool) -> None:
    """The epoch's checkpoint, then `best/` brought in line with the saved state, then checkpoint rotation."""
    save_checkpoint(run, is_best)
    if run.accelerator.is_main_process:
        ensure_best_model(run.args.output_dir, run.state)
        rotate_checkpoints(run.args.output_dir, run.args.save_total_limit, run.state["best_epoch"])
    run.accelerator.wait_for_everyone()


def finish(run: TrainingRun) -> dict:
    """Evaluate `best/` on the test split; `metrics.json` records the result and the checksum of those weights."""
    args, accelerator, state = run.args, run.accelerator, run.state
    best_dir = os.path.join(args.output_dir, "best")
    if accelerator.is_main_process:
        ensure_best_model(args.output_dir, state)
    accelerator.wait_for_everyone()
    best_model = AvigateModel.from_pretrained(best_dir).to(accelerator.device)
    final = evaluate_split(run, best_model, args.test_split)
    result = {
        "dataset": args.benchmark, "split": args.test_split, "selected_on": args.selection_split or "last_epoch",
        "best_epoch": state["best_epoch"], "best_weights_checksum": weights_checksum(best_dir), **final,
    }
    if accelerator.is_main_process:
        # The record `modeling_avigate.hub` turns into the model card's model-index, kept beside the best model.
        write_json_atomically(os.path.join(best_dir, "eval_results.json"),
                              {key: result[key] for key in CARD_RECORD_KEYS})
        # The model card describes this run from its own arguments (initialisation, audio weights, recipe).
        write_json_atomically(os.path.join(best_dir, RUN_RECORD), dataclasses.asdict(args))
        write_model_card(best_dir)
        write_json_atomically(os.path.join(args.output_dir, METRICS_FILE), result)
        logger.info("best epoch %d (selected on %s); %s text→video %s", state["best_epoch"], result["selected_on"],
                    args.test_split, final["text_to_video"])
    accelerator.end_training()
    return result


def train(args: TrainArguments) -> dict:
    """Build, load the data, prepare, resume, then train/evaluate/save epoch by epoch and evaluate the best model."""
    accelerator = build_accelerator(args)
    checkpoint = None if args.cache_only else plan_output_dir(args)
    run = build(args, accelerator)
    build_data(run)
    if args.cache_only:
        # Caches can be built ahead of time (on a CPU machine before a GPU job, or once before runs in parallel).
        accelerator.end_training()
        return {"caches": {kind: cache.directory for kind, cache in run.caches.items()}}
    if accelerator.is_main_process:
        claim_output_dir(args)
    accelerator.wait_for_everyone()
    prepare(run)
    resume(run, checkpoint)
    first_epoch = run.state["epoch"] + 1
    for epoch in range(first_epoch, args.epochs):
        if run.state["global_step"] >= run.total_steps:
            break
        if args.stop_after_epochs is not None and epoch - first_epoch >= args.stop_after_epochs:
            logger.info("stopping after %d epochs as asked; continue with --resume_from_checkpoint latest",
                        args.stop_after_epochs)
            accelerator.end_training()
            return {"stopped_after_epoch": epoch}
        hold_gates_open(run.accelerator.unwrap_model(run.model), gates_held_open(run, epoch))
        loss = train_epoch(run, epoch)
        if is_evaluation_epoch(run, epoch, first_epoch):
            save(run, evaluate_and_select(run, epoch, loss))
    return finish(run)


def is_evaluation_epoch(run: TrainingRun, epoch: int, first_epoch: int) -> bool:
    """Whether `epoch` (0-based) ends with validation and a checkpoint: every `--eval_every_epochs`, the last epoch,
    the epoch that reaches `--max_train_steps`, and the last one `--stop_after_epochs` runs (so a resume loses
    nothing)."""
    args = run.args
    stopping = args.stop_after_epochs is not None and epoch + 1 - first_epoch >= args.stop_after_epochs
    return ((epoch + 1) % args.eval_every_epochs == 0 or epoch + 1 == args.epochs
            or run.state["global_step"] >= run.total_steps or stopping)


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    try:
        return train(args)
    except (FolderOwnershipError, MediaError) as error:
        # The user's input is at fault (a folder we may not replace, an unusable video under --strict): one line.
        raise SystemExit(f"train.py: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
