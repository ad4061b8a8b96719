# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""PyTorch AVIGATE: audio-visual video-text retrieval with gated fusion (Jeong et al., CVPR 2025)."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch import nn
from transformers import ASTModel, CLIPModel, CLIPTextModel, CLIPVisionModel, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging

from .configuration_avigate import AvigateConfig
from .loss_avigate import AvigateContrastiveLoss


logger = logging.get_logger(__name__)

# Scores are computed for at most this many (text, video, frame) triples at once, so a large gallery never
# materialises an [Nt, Nv, T] tensor in one piece.
SIMILARITY_CHUNK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------------------------------
# Pure functions: pooling and similarity. Training (loss_avigate.py), evaluation and the search index reuse them.
# ---------------------------------------------------------------------------------------------------------------


def l2_normalize(tensor: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(tensor, dim=-1)


def masked_mean(frames: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `frames` `[N, T, D]` over the real (nonzero) frames of `video_mask` `[N, T]`."""
    weights = video_mask.bool().to(frames.dtype).unsqueeze(-1)
    return (frames * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pool_video_embeds(frame_embeds: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Global video embedding `v̂ = norm(masked_mean_i f̂_i)` from L2-normalised frame embeddings."""
    return l2_normalize(masked_mean(frame_embeds, video_mask))


class SimilarityParts(NamedTuple):
    """[`multi_grained_similarity`] with `return_parts=True`: the score, its two halves, and for every pair the real
    frame that matched best (the argmax of `⟨t̂, f̂_i⟩`), all `[Nt, Nv]`."""

    scores: torch.Tensor
    global_scores: torch.Tensor
    local_scores: torch.Tensor
    best_frames: torch.Tensor


def multi_grained_similarity(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    frame_embeds: torch.Tensor,
    video_mask: torch.Tensor,
    logit_scale: torch.Tensor | float,
    lse_temperature: float = 1.0,
    chunk_elements: int | None = SIMILARITY_CHUNK_ELEMENTS,
    return_parts: bool = False,
) -> torch.Tensor | SimilarityParts:
    r"""
    AVIGATE's text-video score `s = (s_g + s_l) / 2` with `s_g = σ⟨t̂, v̂⟩` and
    `s_l = (1/λ) logsumexp_{i real}(λ σ ⟨t̂, f̂_i⟩)`. The one place the formula lives: training, evaluation, the
    search index and the search page's score explanation all call it.

    Args:
        text_embeds: L2-normalised text embeddings `[Nt, D]`.
        video_embeds: L2-normalised global video embeddings `[Nv, D]`.
        frame_embeds: L2-normalised frame embeddings `[Nv, T, D]`.
        video_mask: `[Nv, T]`, 1 for real frames.
        logit_scale: σ, already exponentiated and clamped.
        lse_temperature: λ.
        chunk_elements: videos are scored in chunks of at most this many `Nt × chunk × T` elements; `None` scores
            them all at once (for callers that already cut the gallery into chunks).
        return_parts: return a [`SimilarityParts`] (`s`, `s_g`, `s_l` and the best frame of every pair) instead of
            `s` alone.

    Returns:
        `[Nt, Nv]` scores, or their [`SimilarityParts`].

    Example:

    ```python
    >>> import torch
    >>> from modeling_avigate.modeling_avigate import multi_grained_similarity, pool_video_embeds
    >>> frames = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    >>> mask = torch.ones(3, 4)
    >>> text = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    >>> multi_grained_similarity(text, pool_video_embeds(frames, mask), frames, mask, 100.0).shape
    torch.Size([2, 3])
    >>> parts = multi_grained_similarity(text, pool_video_embeds(frames, mask), frames, mask, 100.0, return_parts=True)
    >>> torch.allclose(parts.scores, (parts.global_scores + parts.local_scores) / 2)
    True
    ```
    """
    frame_embeds = frame_embeds.to(text_embeds.dtype)
    video_embeds = video_embeds.to(text_embeds.dtype)
    global_scores = logit_scale * text_embeds @ video_embeds.T
    num_texts, (num_videos, num_frames) = text_embeds.shape[0], frame_embeds.shape[:2]
    chunk = num_videos if chunk_elements is None else max(1, chunk_elements // max(1, num_texts * num_frames))
    local_scores, best_frames = [], []
    for start in range(0, num_videos, chunk):
        frames = frame_embeds[start : start + chunk]
        mask = video_mask[start : start + chunk].bool()
        frame_logits = lse_temperature * logit_scale * torch.einsum("td,vfd->tvf", text_embeds, frames)
        # logsumexp subtracts the max internally, so the -inf padding never overflows (the reference summed raw
        # exponentials, which overflows at σ = 100 and cosine 1).
        frame_logits = frame_logits.masked_fill(~mask.unsqueeze(0), float("-inf"))
        local_scores.append(torch.logsumexp(frame_logits, dim=-1) / lse_temperature)
        if return_parts:
            best_frames.append(frame_logits.argmax(dim=-1))
    local_scores = torch.cat(local_scores, dim=1)
    scores = (global_scores + local_scores) / 2
    if not return_parts:
        return scores
    return SimilarityParts(scores, global_scores, local_scores, torch.cat(best_frames, dim=1))


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


def nested_to_tuple(output: ModelOutput) -> tuple:
    """`output.to_tuple()` with nested outputs (`*_model_output`) turned into tuples too, as `CLIPOutput` does."""
    return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in output.values())


@dataclass
class AvigateVideoOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_frames, projection_dim)`):
        L2-normalised fused frame embeddings `f̂_i`.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised global video embedding `v̂`.
    video_mask (`torch.LongTensor` of shape `(batch_size, num_frames)`):
        1 for real frames, 0 for padding.
    attn_gates (`torch.FloatTensor` of shape `(batch_size, fusion_num_layers)`):
        Cross-attention gate of every fusion layer, in (−1, 1); exactly 0 where audio is absent or masked.
    ffn_gates (`torch.FloatTensor` of shape `(batch_size, fusion_num_layers)`):
        Feed-forward gate of every fusion layer.
    visual_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        Audio-free global embedding before fusion (normalised frame features with position embedding, averaged and
        renormalised); the adaptive margin compares videos with it.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        The CLIP vision tower's hidden states (embeddings, then every layer), one row per *real* frame of the batch:
        each `(num_real_frames, num_patches + 1, vision_hidden_size)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
        The vision tower's attention weights per layer, `(num_real_frames, num_heads, num_patches + 1, num_patches + 1)`.
    audio_model_output (`BaseModelOutputWithPooling`, *optional*):
        [`~AvigateModel.get_audio_features`]' output when the audio came as `input_values` (not as cached
        `audio_hidden_states`).
    fusion_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        Frames entering the gated fusion transformer, then the output of every fusion layer, each
        `(batch_size, num_frames, projection_dim)`.
    fusion_attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
        Frame self-attention weights of every fusion layer, `(batch_size, num_heads, num_frames, num_frames)`.
    fusion_cross_attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
        Frame-to-audio cross-attention weights of every fusion layer, `(batch_size, num_heads, num_frames,
        num_audio_queries)`; absent without audio.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    video_mask: torch.LongTensor | None = None
    attn_gates: torch.FloatTensor | None = None
    ffn_gates: torch.FloatTensor | None = None
    visual_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_model_output: BaseModelOutputWithPooling | None = None
    fusion_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fusion_attentions: tuple[torch.FloatTensor, ...] | None = None
    fusion_cross_attentions: tuple[torch.FloatTensor, ...] | None = None

    def to_tuple(self) -> tuple:
        return nested_to_tuple(self)


@dataclass
class AvigateOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `return_loss` is `True`):
        Adaptive-margin symmetric contrastive loss over the batch of every process ([`AvigateContrastiveLoss`]).
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, video_batch_size)`):
        `similarity(text_embeds, frame_embeds, video_mask)`: the multi-grained scores, logit scale included, no margin.
    logits_per_video (`torch.FloatTensor` of shape `(video_batch_size, text_batch_size)`):
        Transpose of `logits_per_text`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`): L2-normalised text embeddings.
    video_embeds (`torch.FloatTensor` of shape `(video_batch_size, projection_dim)`): L2-normalised video embeddings.
    frame_embeds (`torch.FloatTensor` of shape `(video_batch_size, num_frames, projection_dim)`): fused frames.
    video_mask (`torch.LongTensor` of shape `(video_batch_size, num_frames)`): 1 for real frames.
    attn_gates, ffn_gates (`torch.FloatTensor` of shape `(video_batch_size, fusion_num_layers)`): gate values.
    visual_embeds (`torch.FloatTensor` of shape `(video_batch_size, projection_dim)`): audio-free video embeddings.
    logit_scale (`torch.FloatTensor` of shape `()`): σ, exponentiated and clamped.
    text_model_output (`BaseModelOutputWithPooling`): [`~AvigateModel.get_text_features`]' output (the text tower's
        hidden states and attentions when asked).
    video_model_output (`AvigateVideoOutput`): [`~AvigateModel.get_video_features`]' output (vision tower, audio
        tower and fusion hidden states and attentions when asked).
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    video_mask: torch.LongTensor | None = None
    attn_gates: torch.FloatTensor | None = None
    ffn_gates: torch.FloatTensor | None = None
    visual_embeds: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    video_model_output: AvigateVideoOutput | None = None

    def to_tuple(self) -> tuple:
        return nested_to_tuple(self)


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def key_padding_bias(key_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias `[N, 1, 1, K]` that hides keys where `key_mask` is 0."""
    bias = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
    bias = bias.masked_fill(~key_mask.bool(), torch.finfo(dtype).min)
    return bias[:, None, None, :]


class AvigateAttention(nn.Module):
    """Multi-head attention of `hidden_states` over `key_value_states` (itself when omitted), CLIP's layout."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.projection_dim
        self.num_heads = config.fusion_num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(output, attention weights)`; the weights are `None` unless the eager implementation computes them."""
        key_value_states = hidden_states if key_value_states is None else key_value_states
        batch_size = hidden_states.shape[0]
        queries = self.q_proj(hidden_states).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.k_proj(key_value_states).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.v_proj(key_value_states).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(self, queries, keys, values, attention_mask, scaling=self.scale)
        return self.out_proj(attn_output.reshape(batch_size, -1, self.embed_dim)), attn_weights


class AvigateMLP(nn.Module):
    """D → 4D → D with QuickGELU; `bias=True` is CLIP's MLP, `bias=False` the fusion layers' cross feed-forward."""

    def __init__(self, config: AvigateConfig, bias: bool = True):
        super().__init__()
        self.activation_fn = ACT2FN["quick_gelu"]
        self.fc1 = nn.Linear(config.projection_dim, 4 * config.projection_dim, bias=bias)
        self.fc2 = nn.Linear(4 * config.projection_dim, config.projection_dim, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class AvigateGate(nn.Module):
    """Bias-free 2D → D/2 → 1 MLP with tanh: one scalar per video from `[mean frame ; mean audio query]`."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        self.activation_fn = ACT2FN["quick_gelu"]
        self.fc1 = nn.Linear(2 * config.projection_dim, config.projection_dim // 2, bias=False)
        self.fc2 = nn.Linear(config.projection_dim // 2, 1, bias=False)

    def forward(self, summary: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc2(self.activation_fn(self.fc1(summary)))).squeeze(-1)


class AvigateResamplerLayer(GradientCheckpointingLayer):
    """Pre-norm block: query self-attention, cross-attention to audio tokens (one LayerNorm for both sides), MLP."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        eps = config.fusion_layer_norm_eps
        self.layer_norm1 = nn.LayerNorm(config.projection_dim, eps=eps)
        self.self_attn = AvigateAttention(config)
        self.layer_norm_cross = nn.LayerNorm(config.projection_dim, eps=eps)
        self.cross_attn = AvigateAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.projection_dim, eps=eps)
        self.mlp = AvigateMLP(config)

    def forward(self, queries: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        queries = queries + self.self_attn(self.layer_norm1(queries))[0]
        queries = queries + self.cross_attn(self.layer_norm_cross(queries), self.layer_norm_cross(audio_tokens))[0]
        return queries + self.mlp(self.layer_norm2(queries))


class AvigateAudioResampler(nn.Module):
    """Compresses ~1213 projected AST tokens into `num_audio_queries` audio embeddings with learned queries."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        self.config = config
        self.query_tokens = nn.Parameter(torch.empty(config.num_audio_queries, config.projection_dim))
        self.query_position_embedding = nn.Parameter(torch.empty(config.num_audio_queries, config.projection_dim))
        self.layers = nn.ModuleList([AvigateResamplerLayer(config) for _ in range(config.resampler_num_layers)])

    def forward(self, audio_tokens: torch.Tensor) -> torch.Tensor:
        queries = (self.query_tokens + self.query_position_embedding).expand(audio_tokens.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, audio_tokens)
        return queries


class AvigateFusionLayer(GradientCheckpointingLayer):
    """Gated fusion layer: gated cross-attention to audio, gated feed-forward, then frame self-attention and MLP."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        eps = config.fusion_layer_norm_eps
        self.gate_mode = config.gate_mode
        self.attn_gate = AvigateGate(config)
        self.ffn_gate = AvigateGate(config)
        self.layer_norm_cross = nn.LayerNorm(config.projection_dim, eps=eps)
        self.cross_attn = AvigateAttention(config)
        self.layer_norm_ffn = nn.LayerNorm(config.projection_dim, eps=eps)
        self.cross_ffn = AvigateMLP(config, bias=False)
        self.layer_norm1 = nn.LayerNorm(config.projection_dim, eps=eps)
        self.self_attn = AvigateAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.projection_dim, eps=eps)
        self.mlp = AvigateMLP(config)

    def gates(self, frames: torch.Tensor, video_mask: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(g_att, g_ffn)`, each `[N]`, from the mean real frame and the mean audio query (or fixed by `gate_mode`)."""
        if self.gate_mode != "learned":
            value = 1.0 if self.gate_mode == "open" else 0.0
            fixed = torch.full(frames.shape[:1], value, dtype=frames.dtype, device=frames.device)
            return fixed, fixed
        summary = torch.cat([masked_mean(frames, video_mask), audio.mean(dim=1)], dim=-1)
        return self.attn_gate(summary), self.ffn_gate(summary)

    def forward(
        self,
        frames: torch.Tensor,
        video_mask: torch.Tensor,
        frame_attention_bias: torch.Tensor,
        audio: torch.Tensor | None,
        audio_present: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """`(frames, attn_gate, ffn_gate, self-attention weights, cross-attention weights)`."""
        cross_weights = None
        if audio is None:
            attn_gate = ffn_gate = frames.new_zeros(frames.shape[0])
        else:
            attn_gate, ffn_gate = self.gates(frames, video_mask, audio)
            attn_gate, ffn_gate = attn_gate * audio_present, ffn_gate * audio_present
            # The audio memory is deliberately not normalised (as in the paper's reference implementation).
            cross_output, cross_weights = self.cross_attn(self.layer_norm_cross(frames), audio)
            frames = frames + attn_gate[:, None, None] * cross_output
            frames = frames + ffn_gate[:, None, None] * self.cross_ffn(self.layer_norm_ffn(frames))
        self_output, self_weights = self.self_attn(self.layer_norm1(frames), attention_mask=frame_attention_bias)
        frames = frames + self_output
        frames = frames + self.mlp(self.layer_norm2(frames))
        return frames, attn_gate, ffn_gate, self_weights, cross_weights


@dataclass
class AvigateFusionOutput(ModelOutput):
    r"""
    Output of [`AvigateFusionTransformer`]: fused frames, the gates of every layer and, when asked, every layer's
    frames and attention weights (see [`AvigateVideoOutput`] for the shapes).
    """

    last_hidden_state: torch.FloatTensor | None = None
    attn_gates: torch.FloatTensor | None = None
    ffn_gates: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


class AvigateFusionTransformer(nn.Module):
    """Stack of gated fusion layers; returns the fused frames, the gates of every layer and, when asked, the frames
    and attention weights of every layer."""

    def __init__(self, config: AvigateConfig):
        super().__init__()
        self.layers = nn.ModuleList([AvigateFusionLayer(config) for _ in range(config.fusion_num_layers)])

    def forward(
        self,
        frames: torch.Tensor,
        video_mask: torch.Tensor,
        audio: torch.Tensor | None,
        audio_present: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> AvigateFusionOutput:
        frame_attention_bias = key_padding_bias(video_mask, frames.dtype)
        attn_gates, ffn_gates, hidden_states, self_weights, cross_weights = [], [], [frames], [], []
        for layer in self.layers:
            frames, attn_gate, ffn_gate, layer_self_weights, layer_cross_weights = layer(
                frames, video_mask, frame_attention_bias, audio, audio_present
            )
            attn_gates.append(attn_gate)
            ffn_gates.append(ffn_gate)
            hidden_states.append(frames)
            self_weights.append(layer_self_weights)
            cross_weights.append(layer_cross_weights)
        return AvigateFusionOutput(
            last_hidden_state=frames,
            attn_gates=torch.stack(attn_gates, dim=1),
            ffn_gates=torch.stack(ffn_gates, dim=1),
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(self_weights) if output_attentions else None,
            cross_attentions=tuple(cross_weights) if output_attentions and audio is not None else None,
        )


# ---------------------------------------------------------------------------------------------------------------
# Paper initialisation from CLIP and AST checkpoints
# ---------------------------------------------------------------------------------------------------------------

# Parts of a CLIP text layer that the resampler and fusion layers share by name and shape (their cross-attention,
# gates and cross feed-forward have no CLIP counterpart and stay newly initialised).
CLIP_TEXT_LAYER_PARTS = ("self_attn", "mlp", "layer_norm1", "layer_norm2")


@torch.no_grad()
def copy_module_weights(target: nn.Module, source: nn.Module, name: str) -> bool:
    """Copy every tensor of `source` into `target` when both have the same keys and shapes; otherwise warn and leave
    `target` as initialised. Returns whether the copy happened."""
    source_state, target_state = source.state_dict(), target.state_dict()
    mismatched = sorted(
        key for key in source_state.keys() | target_state.keys()
        if key not in source_state or key not in target_state or source_state[key].shape != target_state[key].shape
    )
    if mismatched:
        logger.warning(
            f"Not initialising {name} from the checkpoint: keys or shapes differ ({', '.join(mismatched[:5])})"
        )
        return False
    target.load_state_dict(source_state)
    return True


def copy_clip_text_layers(layers: nn.ModuleList, clip_text: CLIPTextModel, name: str) -> None:
    """Initialise layer i's self-attention, MLP and LN1/LN2 from CLIP text layer i, as the paper does."""
    text_config, width = clip_text.config, layers[0].layer_norm1.normalized_shape[0]
    if text_config.hidden_size != width or text_config.intermediate_size != 4 * width:
        logger.warning(
            f"Not initialising {name} from CLIP text layers: text hidden_size={text_config.hidden_size} and "
            f"intermediate_size={text_config.intermediate_size} do not match projection_dim={width} and 4 * {width}"
        )
        return
    text_layers = clip_text.encoder.layers
    if len(layers) > len(text_layers):
        logger.warning(f"{name} has {len(layers)} layers but CLIP text only {len(text_layers)}; the rest stay random")
    for index, (layer, text_layer) in enumerate(zip(layers, text_layers)):
        for part in CLIP_TEXT_LAYER_PARTS:
            copy_module_weights(getattr(layer, part), getattr(text_layer, part), f"{name}.{index}.{part}")


@torch.no_grad()
def copy_frame_positions(frame_positions: nn.Embedding, text_positions: nn.Embedding) -> None:
    """Initialise the frame position table with the first rows of CLIP's text position table (the paper's choice)."""
    (num_frames, width), (num_positions, text_width) = frame_positions.weight.shape, text_positions.weight.shape
    if width != text_width:
        logger.warning(
            f"Not initialising frame_position_embedding: CLIP text width {text_width} != projection_dim {width}"
        )
        return
    if num_positions < num_frames:
        logger.warning(
            f"CLIP text has {num_positions} positions for max_frames={num_frames}; frame positions from "
            f"{num_positions} on stay random"
        )
    rows = min(num_frames, num_positions)
    frame_positions.weight[:rows] = text_positions.weight[:rows]


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


class AvigatePreTrainedModel(PreTrainedModel):
    config: AvigateConfig
    base_model_prefix = "avigate"
    main_input_name = "input_ids"
    input_modalities = ("text", "video", "audio")
    supports_gradient_checkpointing = True
    _no_split_modules = [
        "CLIPEncoderLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings", "ASTLayer", "ASTEmbeddings",
        "AvigateResamplerLayer", "AvigateFusionLayer",
    ]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) for every new weight, zero biases, unit norms, orthogonal audio queries."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, AvigateAudioResampler):
            init.orthogonal_(module.query_tokens)
            init.normal_(module.query_position_embedding, std=std)
        elif isinstance(module, AvigateModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    @classmethod
    def is_custom_code(cls) -> bool:
        """`False`, so weight initialisation runs every rule of every sub-module.

        transformers marks the modules of custom code that own no parameters directly as initialised without calling
        their `_init_weights`, to protect remote code that writes weights in place. That shortcut skips the rules CLIP
        keeps on such modules (attention, MLP: scaled normals), so CLIP towers missing from a checkpoint would get
        plain N(0, 0.02). Every rule here and in the towers goes through `transformers.initialization`, which leaves
        loaded tensors alone, so the shortcut is not needed.
        """
        return False


class AvigateModel(AvigatePreTrainedModel):
    r"""
    AVIGATE: CLIP frames and text, AST audio, an audio resampler and a gated fusion transformer that decides per video
    and per layer how much of the sound enters the frame embeddings.

    Example:

    ```python
    >>> import torch
    >>> from modeling_avigate import AvigateConfig, AvigateModel
    >>> config = AvigateConfig(
    ...     text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
    ...     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
    ...                        image_size=32, patch_size=16),
    ...     audio_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
    ...     projection_dim=32, fusion_num_attention_heads=4, num_audio_queries=4,
    ...     resampler_num_layers=1, fusion_num_layers=2)
    >>> model = AvigateModel(config).eval()
    >>> out = model(input_ids=torch.tensor([[49406, 320, 49407]]), pixel_values=torch.randn(1, 3, 3, 32, 32),
    ...             input_values=torch.randn(1, 1024, 128), has_audio=torch.tensor([True]), return_loss=True)
    >>> out.logits_per_text.shape, out.attn_gates.shape
    (torch.Size([1, 1]), torch.Size([1, 2]))
    ```
    """

    def __init__(self, config: AvigateConfig):
        super().__init__(config)
        projection_dim = config.projection_dim
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.audio_model = ASTModel._from_config(config.audio_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, projection_dim, bias=False)
        self.audio_projection = nn.Linear(config.audio_config.hidden_size, projection_dim, bias=False)
        self.frame_position_embedding = nn.Embedding(config.max_frames, projection_dim)
        self.audio_resampler = AvigateAudioResampler(config)
        self.fusion = AvigateFusionTransformer(config)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.contrastive_loss = AvigateContrastiveLoss(
            partial(multi_grained_similarity, lse_temperature=config.lse_temperature),
            config.margin_scale, config.margin_max,
        )
        self.post_init()

    @classmethod
    def from_clip_ast_pretrained(
        cls, clip_name_or_path: str | os.PathLike, ast_name_or_path: str | os.PathLike, **config_overrides
    ) -> "AvigateModel":
        r"""
        Build an AVIGATE model with the paper's initialisation: CLIP towers, text/visual projections and logit scale
        from a [`~transformers.CLIPModel`] checkpoint; the AST from an [`~transformers.ASTModel`] or
        [`~transformers.ASTForAudioClassification`] checkpoint; the self-attention, MLP, LN1 and LN2 of the resampler
        and fusion layers from CLIP text layers 0..L−1 (when the text width equals `projection_dim`); the frame
        position table from CLIP's text position embedding. Everything else keeps `_init_weights`' N(0, 0.02) and zero
        biases. Parts whose shapes do not match are left random with a warning.

        Args:
            clip_name_or_path: Hub id or folder of a CLIP checkpoint, e.g. `"openai/clip-vit-base-patch32"`.
            ast_name_or_path: Hub id or folder of an AST checkpoint, e.g. `"MIT/ast-finetuned-audioset-10-10-0.4593"`.
            config_overrides: [`AvigateConfig`] fields (e.g. `margin_max=0.05`); `projection_dim` defaults to CLIP's.

        Example:

        ```python
        >>> from modeling_avigate import AvigateModel
        >>> model = AvigateModel.from_clip_ast_pretrained(
        ...     "openai/clip-vit-base-patch32", "MIT/ast-finetuned-audioset-10-10-0.4593")  # doctest: +SKIP
        ```
        """
        # transformers' from_pretrained applies its checkpoint key renames (e.g. AST's `encoder.layer.*`) and strips
        # the `audio_spectrogram_transformer.` prefix of classification checkpoints.
        clip = CLIPModel.from_pretrained(clip_name_or_path)
        ast = ASTModel.from_pretrained(ast_name_or_path)
        config_kwargs = {"projection_dim": clip.config.projection_dim, **config_overrides}
        config = AvigateConfig(
            text_config=clip.config.text_config.to_dict(),
            vision_config=clip.config.vision_config.to_dict(),
            audio_config=ast.config.to_dict(),
            **config_kwargs,
        )
        model = cls(config)
        for name in ("text_model", "vision_model", "text_projection", "visual_projection"):
            copy_module_weights(getattr(model, name), getattr(clip, name), name)
        copy_module_weights(model.audio_model, ast, "audio_model")
        with torch.no_grad():
            model.logit_scale.copy_(clip.logit_scale)
        copy_clip_text_layers(model.audio_resampler.layers, clip.text_model, "audio_resampler.layers")
        copy_clip_text_layers(model.fusion.layers, clip.text_model, "fusion.layers")
        copy_frame_positions(model.frame_position_embedding, clip.text_model.embeddings.position_embedding)
        return model

    # -- towers ---------------------------------------------------------------------------------------------------

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        CLIP text tower → EOS token → final LayerNorm → projection.

        Returns:
            The text tower's [`BaseModelOutputWithPooling`] (`last_hidden_state`, and `hidden_states` / `attentions`
            when asked) whose `pooler_output` is the L2-normalised text embedding `[Nt, D]`.

        Example:

        ```python
        >>> import torch
        >>> from modeling_avigate import AvigateConfig, AvigateModel
        >>> from modeling_avigate.testing_utils import tiny_config_kwargs
        >>> model = AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()
        >>> out = model.get_text_features(torch.tensor([[1, 2, 3]]), output_hidden_states=True)
        >>> out.pooler_output.shape, len(out.hidden_states)
        (torch.Size([1, 32]), 3)
        ```
        """
        text_outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        text_outputs.pooler_output = l2_normalize(self.text_projection(text_outputs.pooler_output))
        return text_outputs

    def get_frame_features(
        self, pixel_values: torch.Tensor, video_mask: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling:
        """Projected CLIP CLS features plus frame position embeddings in `pooler_output`, `[Nv, T, D]`; padded frames
        are not encoded, so the vision tower's `last_hidden_state`, `hidden_states` and `attentions` have one row per
        real frame."""
        num_videos, num_frames = pixel_values.shape[:2]
        if num_frames > self.config.max_frames:
            raise ValueError(f"pixel_values has {num_frames} frames but config.max_frames is {self.config.max_frames}")
        real = video_mask.to(pixel_values.device).bool()
        vision_outputs = self.vision_model(pixel_values=pixel_values[real], return_dict=True, **kwargs)
        projected = self.visual_projection(vision_outputs.pooler_output)
        frames = projected.new_zeros(num_videos, num_frames, projected.shape[-1])
        frames[real.to(frames.device)] = projected
        # Call the embedding module instead of reading its weight, so accelerate's offloading hooks can load it.
        positions = self.frame_position_embedding(torch.arange(num_frames, device=frames.device))
        vision_outputs.pooler_output = frames + positions.to(frames.device)
        return vision_outputs

    def _encode_audio(
        self, input_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[BaseModelOutputWithPooling, torch.Tensor]:
        """AST's outputs and its last layer's states *before* the final LayerNorm. Those are captured even when hidden
        states were not asked for (then only they are, and the outputs carry none)."""
        asked = kwargs.get("output_hidden_states", self.audio_model.config.output_hidden_states) is True
        if not asked:
            kwargs["output_hidden_states"] = [-1]
        # AST's patch embedding does not cast its input, so float32 processor output must meet the model's dtype here.
        outputs = self.audio_model(input_values=input_values.to(self.audio_model.dtype), return_dict=True, **kwargs)
        pre_layernorm_states = outputs.hidden_states[-1]
        if not asked:
            outputs.hidden_states = None
        return outputs, pre_layernorm_states

    def get_audio_hidden_states(self, input_values: torch.Tensor) -> torch.Tensor:
        """AST token states *before* its final LayerNorm, `[Nv, 2 + num_patches, H]`: the frozen, cacheable part."""
        return self._encode_audio(input_values)[1]

    def get_audio_embeddings_from_hidden_states(self, audio_hidden_states: torch.Tensor) -> torch.Tensor:
        """The audio embeddings the fusion attends to, `[Nv, num_audio_queries, D]`, from (cached) pre-LayerNorm AST
        states: CLS and distillation tokens merged into their mean, AST's final LayerNorm, projection, resampler."""
        special = audio_hidden_states[:, :2].mean(dim=1, keepdim=True)
        tokens = torch.cat([special, audio_hidden_states[:, 2:]], dim=1)
        return self.audio_resampler(self.audio_projection(self.audio_model.layernorm(tokens)))

    @can_return_tuple
    def get_audio_features(
        self, input_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling:
        r"""
        AST on log-mel features `input_values` `[Nv, max_length, num_mel_bins]`, then the audio embeddings of
        [`~AvigateModel.get_audio_embeddings_from_hidden_states`].

        Returns:
            AST's [`BaseModelOutputWithPooling`] (`last_hidden_state` after its final LayerNorm, and `hidden_states` /
            `attentions` when asked) whose `pooler_output` holds the audio embeddings `[Nv, num_audio_queries, D]`.

        Example:

        ```python
        >>> import torch
        >>> from modeling_avigate import AvigateConfig, AvigateModel
        >>> from modeling_avigate.testing_utils import tiny_config_kwargs
        >>> model = AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()
        >>> model.get_audio_features(torch.randn(2, 1024, 128)).pooler_output.shape
        torch.Size([2, 4, 32])
        ```
        """
        audio_outputs, pre_layernorm_states = self._encode_audio(input_values, **kwargs)
        audio_outputs.pooler_output = self.get_audio_embeddings_from_hidden_states(pre_layernorm_states)
        return audio_outputs

    # -- video ------------------------------------------------------------------------------------------------------

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        has_audio: torch.Tensor | None = None,
        audio_hidden_states: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AvigateVideoOutput:
        r"""
        Encode videos with their sound: frames `[Nv, T, 3, H, W]`, optional fbank `input_values` `[Nv, 1024, 128]`
        (or precomputed `audio_hidden_states` from [`~AvigateModel.get_audio_hidden_states`]) and `has_audio` `[Nv]`.
        Without audio inputs the videos are encoded visually only (all gates 0). `output_hidden_states` and
        `output_attentions` return those of the vision tower, the audio tower (in `audio_model_output`) and the fusion
        layers (attention weights need `attn_implementation="eager"`).

        Example:

        ```python
        >>> import torch
        >>> from modeling_avigate import AvigateConfig, AvigateModel
        >>> from modeling_avigate.testing_utils import tiny_config_kwargs
        >>> model = AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()
        >>> out = model.get_video_features(torch.randn(2, 3, 3, 32, 32), input_values=torch.randn(2, 1024, 128))
        >>> out.pooler_output.shape, out.last_hidden_state.shape, out.attn_gates.shape
        (torch.Size([2, 32]), torch.Size([2, 3, 32]), torch.Size([2, 2]))
        ```
        """
        if video_mask is None:
            video_mask = torch.ones(pixel_values.shape[:2], dtype=torch.long, device=pixel_values.device)
        vision_outputs = self.get_frame_features(pixel_values, video_mask, **kwargs)
        frames = vision_outputs.pooler_output
        video_mask = video_mask.to(frames.device)
        visual_embeds = pool_video_embeds(l2_normalize(frames), video_mask)

        audio = audio_present = audio_outputs = None
        if audio_hidden_states is None and input_values is not None:
            audio_outputs = self.get_audio_features(input_values, return_dict=True, **kwargs)
            audio = audio_outputs.pooler_output
        elif audio_hidden_states is not None:
            audio = self.get_audio_embeddings_from_hidden_states(audio_hidden_states.to(frames.dtype))
        if audio is not None:
            audio = audio.to(frames.device)
            audio_present = torch.ones(frames.shape[0], dtype=frames.dtype, device=frames.device)
            if self.config.mask_missing_audio and has_audio is not None:
                audio_present = has_audio.to(frames.device).bool().to(frames.dtype)

        fusion_outputs = self.fusion(
            frames, video_mask, audio, audio_present,
            output_hidden_states=kwargs.get("output_hidden_states", self.config.output_hidden_states) is True,
            output_attentions=kwargs.get("output_attentions", self.config.output_attentions) is True,
        )
        weight = self.config.fusion_residual_weight
        frame_embeds = l2_normalize(weight * fusion_outputs.last_hidden_state + (1 - weight) * frames)
        return AvigateVideoOutput(
            last_hidden_state=frame_embeds,
            pooler_output=pool_video_embeds(frame_embeds, video_mask),
            video_mask=video_mask,
            attn_gates=fusion_outputs.attn_gates,
            ffn_gates=fusion_outputs.ffn_gates,
            visual_embeds=visual_embeds,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            audio_model_output=audio_outputs,
            fusion_hidden_states=fusion_outputs.hidden_states,
            fusion_attentions=fusion_outputs.attentions,
            fusion_cross_attentions=fusion_outputs.cross_attentions,
        )

    # -- scores -----------------------------------------------------------------------------------------------------

    def get_logit_scale(self) -> torch.Tensor:
        """σ = exp(logit_scale), clamped to exp(logit_scale_max) (100 by default)."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max).exp()

    def similarity(
        self,
        text_embeds: torch.Tensor,
        frame_embeds: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        chunk_elements: int = SIMILARITY_CHUNK_ELEMENTS,
    ) -> torch.Tensor:
        """`[Nt, Nv]` multi-grained scores of normalised text and fused frame embeddings: the training logits."""
        if video_mask is None:
            video_mask = torch.ones(frame_embeds.shape[:2], dtype=torch.long, device=frame_embeds.device)
        video_embeds = pool_video_embeds(frame_embeds.to(text_embeds.dtype), video_mask)
        return multi_grained_similarity(
            text_embeds, video_embeds, frame_embeds, video_mask, self.get_logit_scale(),
            self.config.lse_temperature, chunk_elements,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        has_audio: torch.Tensor | None = None,
        audio_hidden_states: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AvigateOutput:
        r"""
        Encode texts and videos and score every pair. With `return_loss=True` the batch must hold matching pairs
        (text i describes video i) and the adaptive-margin contrastive loss is returned; in a multi-process run it
        covers the batch of every process (`self.contrastive_loss`, an [`AvigateContrastiveLoss`]).
        `output_hidden_states`, `output_attentions` and `return_dict` work as in other transformers models; the towers'
        and fusion layers' hidden states and attentions are in `text_model_output` and `video_model_output`.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError(
                "AvigateModel.forward scores texts against videos and needs both `input_ids` and `pixel_values`; "
                "embed one side alone with `get_text_features` or `get_video_features`."
            )
        text_outputs = self.get_text_features(input_ids, attention_mask, return_dict=True, **kwargs)
        text_embeds = text_outputs.pooler_output
        video_outputs = self.get_video_features(
            pixel_values, video_mask, input_values, has_audio, audio_hidden_states, return_dict=True, **kwargs
        )
        logit_scale = self.get_logit_scale()
        video_embeds = video_outputs.pooler_output
        frame_embeds, video_mask = video_outputs.last_hidden_state, video_outputs.video_mask
        loss = None
        if return_loss:
            # The loss scores the batch of every process; this process's block of those scores is logits_per_text.
            loss, logits_per_text = self.contrastive_loss(
                text_embeds, video_embeds, frame_embeds, video_mask, video_outputs.visual_embeds, logit_scale
            )
            logits_per_text = logits_per_text.to(text_embeds.dtype)
        else:
            logits_per_text = multi_grained_similarity(
                text_embeds, video_embeds, frame_embeds, video_mask, logit_scale, self.config.lse_temperature
            )
        return AvigateOutput(
            loss=loss,
            logits_per_text=logits_per_text,
            logits_per_video=logits_per_text.T,
            text_embeds=text_embeds,
            video_embeds=video_embeds,
            frame_embeds=frame_embeds,
            video_mask=video_mask,
            attn_gates=video_outputs.attn_gates,
            ffn_gates=video_outputs.ffn_gates,
            visual_embeds=video_outputs.visual_embeds,
            logit_scale=logit_scale,
            text_model_output=text_outputs,
            video_model_output=video_outputs,
        )


__all__ = [
    "AvigateModel",
    "AvigatePreTrainedModel",
    "AvigateOutput",
    "AvigateVideoOutput",
    "multi_grained_similarity",
    "SimilarityParts",
    "pool_video_embeds",
]
