"""AVIGATE for Hugging Face transformers: audio-visual video-text retrieval with gated fusion (CVPR 2025).

The public classes are imported on first use (PEP 562), so that the `avigate` program answers `--help` and `info`
without importing torch and transformers. The first use also registers the classes with transformers' Auto classes.
"""

import functools
import importlib
from typing import TYPE_CHECKING, Any


# Public name → the submodule that defines it.
_EXPORTS = {
    "AvigateConfig": "configuration_avigate",
    "AvigateFeatureExtractor": "processors",
    "AvigateModel": "modeling_avigate",
    "AvigateOutput": "modeling_avigate",
    "AvigatePreTrainedModel": "modeling_avigate",
    "AvigateProcessor": "processors",
    "AvigateVideoOutput": "modeling_avigate",
    "AvigateVideoProcessor": "processors",
    "SearchResult": "search",
    "VideoIndex": "search",
}

if TYPE_CHECKING:
    from .configuration_avigate import AvigateConfig
    from .modeling_avigate import AvigateModel, AvigateOutput, AvigatePreTrainedModel, AvigateVideoOutput
    from .processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor
    from .search import SearchResult, VideoIndex


@functools.cache
def register_auto_classes() -> None:
    """`AutoConfig`, `AutoModel` (and, by importing `processors`, `AutoProcessor`) learn the "avigate" model type;
    `save_pretrained` then also copies configuration_avigate.py / modeling_avigate.py into the folder and writes an
    `auto_map`, so the folder loads with `trust_remote_code=True` where this package is not installed."""
    from transformers import AutoConfig, AutoModel

    from . import processors  # noqa: F401  (registers the processor classes)
    from .configuration_avigate import AvigateConfig
    from .modeling_avigate import AvigateModel

    AutoConfig.register("avigate", AvigateConfig)
    AutoModel.register(AvigateConfig, AvigateModel)
    AvigateConfig.register_for_auto_class()
    AvigateModel.register_for_auto_class("AutoModel")


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_auto_classes()
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
