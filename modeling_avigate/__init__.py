"""AVIGATE for Hugging Face transformers: audio-visual video-text retrieval with gated fusion (CVPR 2025)."""

from transformers import AutoConfig, AutoModel

from .configuration_avigate import AvigateConfig
from .modeling_avigate import AvigateModel, AvigateOutput, AvigatePreTrainedModel, AvigateVideoOutput
from .processors import AvigateFeatureExtractor, AvigateProcessor
from .search import SearchResult, VideoIndex


AutoConfig.register("avigate", AvigateConfig)
AutoModel.register(AvigateConfig, AvigateModel)
# `save_pretrained` then copies configuration_avigate.py / modeling_avigate.py into the folder and writes an
# `auto_map`, so the folder loads with `trust_remote_code=True` where this package is not installed.
AvigateConfig.register_for_auto_class()
AvigateModel.register_for_auto_class("AutoModel")

__all__ = [
    "AvigateConfig",
    "AvigateFeatureExtractor",
    "AvigateModel",
    "AvigateOutput",
    "AvigatePreTrainedModel",
    "AvigateProcessor",
    "AvigateVideoOutput",
    "SearchResult",
    "VideoIndex",
]
