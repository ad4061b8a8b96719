"""Hub publishing for AVIGATE: model cards, pushing checkpoint folders, converting the original checkpoints.

Benchmarks are published with `modeling_avigate.data.push_benchmark_to_hub` (Parquet), which needs `datasets`.
"""

import importlib
from typing import TYPE_CHECKING, Any


# Public name → submodule. The submodules are imported on first access (PEP 562) rather than here, because
# `python -m modeling_avigate.hub.push` / `.convert_avigate_original_checkpoint` would otherwise find the module
# already imported by this package and runpy would execute it a second time (with a RuntimeWarning).
_EXPORTS = {
    "ConversionReport": "convert_avigate_original_checkpoint",
    "convert_avigate_original_checkpoint": "convert_avigate_original_checkpoint",
    "build_model_card": "model_card",
    "load_eval_results": "model_card",
    "write_model_card": "model_card",
    "push_avigate_to_hub": "push",
    "stage_avigate_checkpoint": "push",
}

if TYPE_CHECKING:
    from .convert_avigate_original_checkpoint import ConversionReport, convert_avigate_original_checkpoint
    from .model_card import build_model_card, load_eval_results, write_model_card
    from .push import push_avigate_to_hub, stage_avigate_checkpoint


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
