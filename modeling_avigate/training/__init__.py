"""Training AVIGATE: what `examples/train.py` builds on.

One module per concern:

- `arguments`: `TrainArguments`, read from a YAML config and the command line;
- `recipe`: the model and processor a run starts from, freezing, parameter groups and learning rates, the
  hard-negative sampler, held-open gates;
- `output_dir`: which run an output folder holds, decided before anything is written, and the run's results;
- `checkpoints`: the trainer state, atomic checkpoints, their rotation and `best/`.

Every folder they write carries the package's ownership marker and is replaced atomically (`modeling_avigate.folders`).
"""

from .arguments import RUN_INDEPENDENT_ARGUMENTS, TrainArguments, parse_arguments
from .checkpoints import (
    BEST_DIR,
    BEST_MODEL_KIND,
    CHECKPOINT_KIND,
    METRICS_FILE,
    NonFiniteLossError,
    TrainerState,
    checkpoint_dir,
    checkpoint_epochs,
    checkpoints_to_delete,
    ensure_best_model,
    is_evaluation_epoch,
    latest_checkpoint,
    load_checkpoint,
    rotate_checkpoints,
    save_checkpoint,
    weights_checksum,
)
from .output_dir import RUN_RECORD, TRAINING_RUN_KIND, claim_output_dir, plan_output_dir, write_results
from .recipe import (
    LearningRates,
    build_model,
    build_optimizer,
    build_parameter_groups,
    build_processor,
    freeze_for_training,
    gates_held_open,
    hard_negative_sampler,
    hold_gates_open,
    processor_from_settings,
    resolve_mixed_precision,
)


__all__ = [
    "BEST_DIR",
    "BEST_MODEL_KIND",
    "CHECKPOINT_KIND",
    "METRICS_FILE",
    "RUN_INDEPENDENT_ARGUMENTS",
    "RUN_RECORD",
    "TRAINING_RUN_KIND",
    "LearningRates",
    "NonFiniteLossError",
    "TrainArguments",
    "TrainerState",
    "build_model",
    "build_optimizer",
    "build_parameter_groups",
    "build_processor",
    "checkpoint_dir",
    "checkpoint_epochs",
    "checkpoints_to_delete",
    "claim_output_dir",
    "ensure_best_model",
    "freeze_for_training",
    "gates_held_open",
    "hard_negative_sampler",
    "hold_gates_open",
    "is_evaluation_epoch",
    "latest_checkpoint",
    "load_checkpoint",
    "parse_arguments",
    "plan_output_dir",
    "processor_from_settings",
    "resolve_mixed_precision",
    "rotate_checkpoints",
    "save_checkpoint",
    "weights_checksum",
    "write_results",
]
