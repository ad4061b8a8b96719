"""Hub publishing for AVIGATE: model cards, pushing checkpoint folders, converting the original checkpoints.

The `avigate push` and `avigate convert` commands (`modeling_avigate.commands`) call these functions. Benchmarks are
published with `modeling_avigate.data.push_benchmark_to_hub` (Parquet), which needs `datasets`.
"""

from .convert_avigate_original_checkpoint import ConversionReport, convert_avigate_original_checkpoint
from .model_card import build_model_card, load_eval_results, write_model_card
from .push import push_avigate_to_hub, stage_avigate_checkpoint


__all__ = [
    "ConversionReport",
    "build_model_card",
    "convert_avigate_original_checkpoint",
    "load_eval_results",
    "push_avigate_to_hub",
    "stage_avigate_checkpoint",
    "write_model_card",
]
