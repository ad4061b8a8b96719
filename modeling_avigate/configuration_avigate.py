# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""AVIGATE model configuration."""

import math
from typing import Literal

from transformers import ASTConfig, CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

GATE_MODES = ("learned", "open", "closed")


class AvigateConfig(PreTrainedConfig):
    r"""
    Configuration of an [`AvigateModel`]: CLIP text and vision towers, an AST audio tower, the audio resampler and
    the gated fusion transformer. Defaults are the paper's MSR-VTT ViT-B/32 recipe.

    Args:
        text_config (`dict` or `CLIPTextConfig`, *optional*): the CLIP text tower.
        vision_config (`dict` or `CLIPVisionConfig`, *optional*): the CLIP vision tower.
        audio_config (`dict` or `ASTConfig`, *optional*): the Audio Spectrogram Transformer.
        projection_dim (`int`, defaults to 512): joint embedding width D.
        num_audio_queries (`int`, defaults to 12): learned queries of the audio resampler.
        resampler_num_layers (`int`, defaults to 4): blocks of the audio resampler.
        fusion_num_layers (`int`, defaults to 4): layers of the gated fusion transformer.
        fusion_num_attention_heads (`int`, defaults to 8): heads of every resampler and fusion attention.
        fusion_residual_weight (`float`, defaults to 0.05): w in `w * GFT(f) + (1 - w) * f`.
        fusion_layer_norm_eps (`float`, defaults to 1e-12): epsilon of every resampler and fusion LayerNorm.
        max_frames (`int`, defaults to 77): size of the frame position table.
        lse_temperature (`float`, defaults to 1.0): λ of the log-sum-exp frame pooling in the similarity.
        margin_scale (`float`, defaults to 0.2): λ_m of the adaptive margin.
        margin_max (`float`, defaults to 0.1): δ, the margin cap (0.05 for VATEX).
        mask_missing_audio (`bool`, defaults to `True`): close both gates for videos without a sound track.
        gate_mode (`str`, defaults to `"learned"`): `"learned"` (paper), `"open"` (gates fixed to 1, ungated
            fusion) or `"closed"` (gates fixed to 0, visual only).
        logit_scale_init_value (`float`, defaults to ln(1/0.07)): initial log logit scale.
        logit_scale_max (`float`, defaults to ln(100)): the logit scale is clamped to `exp(logit_scale_max)`.
        initializer_range (`float`, defaults to 0.02): std of the normal init of every new module.

    Example:

    ```python
    >>> from modeling_avigate import AvigateConfig, AvigateModel
    >>> config = AvigateConfig()
    >>> config.fusion_num_layers
    4
    ```
    """

    model_type = "avigate"
    sub_configs_defaults = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig, "audio_config": ASTConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_config: dict | CLIPVisionConfig | None = None
    audio_config: dict | ASTConfig | None = None
    projection_dim: int = 512
    num_audio_queries: int = 12
    resampler_num_layers: int = 4
    fusion_num_layers: int = 4
    fusion_num_attention_heads: int = 8
    fusion_residual_weight: float = 0.05
    fusion_layer_norm_eps: float = 1e-12
    max_frames: int = 77
    lse_temperature: float = 1.0
    margin_scale: float = 0.2
    margin_max: float = 0.1
    mask_missing_audio: bool = True
    gate_mode: Literal["learned", "open", "closed"] = "learned"
    logit_scale_init_value: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Fail at construction, naming the field, instead of deep inside a forward pass."""
        positive = ("projection_dim", "num_audio_queries", "resampler_num_layers", "fusion_num_layers",
                    "fusion_num_attention_heads", "max_frames", "lse_temperature", "fusion_layer_norm_eps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"AvigateConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.projection_dim % self.fusion_num_attention_heads:
            raise ValueError(
                f"AvigateConfig.fusion_num_attention_heads={self.fusion_num_attention_heads} must divide "
                f"projection_dim={self.projection_dim}"
            )
        if self.projection_dim % 2:
            raise ValueError(f"AvigateConfig.projection_dim must be even (gate MLPs use D/2), got {self.projection_dim}")
        for name in ("margin_scale", "margin_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"AvigateConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.fusion_residual_weight <= 1.0:
            raise ValueError(f"AvigateConfig.fusion_residual_weight must be in [0, 1], got {self.fusion_residual_weight!r}")
        if self.gate_mode not in GATE_MODES:
            raise ValueError(f"AvigateConfig.gate_mode must be one of {GATE_MODES}, got {self.gate_mode!r}")
        if self.logit_scale_init_value > self.logit_scale_max:
            raise ValueError(
                f"AvigateConfig.logit_scale_init_value={self.logit_scale_init_value} exceeds "
                f"logit_scale_max={self.logit_scale_max}"
            )


__all__ = ["AvigateConfig"]
