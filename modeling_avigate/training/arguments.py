"""The arguments of `examples/train.py`: the `TrainArguments` dataclass, read from a YAML config and the command line.

`--config FILE` supplies the defaults (its top-level keys are `TrainArguments` fields), the command line overrides
them (`null` clears an optional one), and `--model.key value`, `--processor.key value` and `--benchmark_kwargs.key
value` override keys of those sections (`--model.text_config.hidden_size 32` reaches nested ones; values are read as
YAML).
"""

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser

from ..fast_inference import EncoderPrecision


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
        if self.audio_cache and self.train_audio_encoder:
            raise SystemExit("--audio_cache stores the frozen AST's output: it cannot be used with "
                             "--train_audio_encoder")


NULL_STRINGS = ("null", "None", "none", "~")
SECTIONS = ("model", "processor", "benchmark_kwargs")
# Arguments that do not change what a run computes: a run record differing only in these is still "this run".
RUN_INDEPENDENT_ARGUMENTS = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_total_limit", "stop_after_epochs",
    "cache_only", "num_workers", "eval_batch_size", "report_to", "audio_cache", "frame_cache", "strict",
})


def parse_arguments(argv: list[str] | None = None, description: str | None = __doc__) -> TrainArguments:
    """`--config FILE` supplies the defaults, the command line overrides them; `description` heads `--help`."""
    parser = HfArgumentParser(
        TrainArguments, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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
