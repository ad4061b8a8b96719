"""AVIGATE for Hugging Face transformers: audio-visual video-text retrieval with gated fusion (CVPR 2025)."""

from transformers import AutoConfig, AutoModel

from .configuration_avigate import AvigateConfig


AutoConfig.register("avigate", AvigateConfig)

__all__ = ["AvigateConfig"]
