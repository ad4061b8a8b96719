# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Convert original AVIGATE weights into a Hugging Face [`AvigateModel`] folder.

Two sources are supported, both mapped through one table (in the style of timm's `checkpoint_filter_fn`):

- the official training checkpoint of BoseungJeong/AVIGATE-CVPR2025 (`pytorch_model.bin.N`, a CLIP4Clip-layout
  state dict: `clip.visual.*`, `clip.transformer.*`, `clip.audio.v.*`, `transformer_Fusion.*`, `transformerClip.*`,
  ...) → a trained model;
- an OpenAI CLIP checkpoint (`ViT-B-32.pt`) plus the original AST checkpoint (`audioset_10_10_0.4593.pth`, keys under
  `module.v.*`) → the paper's initial model (the towers converted, the resampler and fusion layers initialised from
  the CLIP text layers as in [`AvigateModel.from_clip_ast_pretrained`]).

Every source key must be mapped (or be on the short list of known unused keys) and every model key must be filled;
otherwise the conversion stops and lists the offending keys, unless `allow_partial=True`.

Usage:

```bash
avigate convert --checkpoint ckpts/msrvtt/pytorch_model.bin.4 --output-dir avigate-msrvtt
avigate convert --clip-checkpoint ViT-B-32.pt --ast-checkpoint audioset_10_10_0.4593.pth --output-dir avigate-init
```
"""

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.hub.torchscript_tensors import read_torchscript_tensors
from modeling_avigate.modeling_avigate import copy_clip_text_layers, copy_frame_positions


StateDict = dict[str, torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]

# OpenAI CLIP and the original AST/DeiT use 64-dimensional attention heads; head counts are not stored in weights.
HEAD_DIM = 64
# timm's DeiT (the original AST) normalises with eps 1e-6, the epsilon the official weights were trained with.
TIMM_LAYER_NORM_EPS = 1e-6
# Model parameters that have no counterpart in CLIP or AST: the paper initialises them (partly from CLIP text layers,
# see `initialize_new_modules`), so an initial model built from CLIP + AST may lack them in the converted weights.
NEW_MODULE_PREFIXES = ("audio_projection.", "frame_position_embedding.", "audio_resampler.", "fusion.")


# ---------------------------------------------------------------------------------------------------------------
# The mapping table
# ---------------------------------------------------------------------------------------------------------------


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _transpose(tensor: torch.Tensor) -> torch.Tensor:
    """`x @ P` parameters `[in, out]` become `nn.Linear` weights `[out, in]`; `query_tokens` `[D, Q]` → `[Q, D]`."""
    return tensor.T.contiguous()


def _packed_part(tensor: torch.Tensor, index: int) -> torch.Tensor:
    """Part `index` (0 = query, 1 = key, 2 = value) of a packed `in_proj`/`qkv` weight or bias."""
    return tensor.chunk(3, dim=0)[index].contiguous()


@dataclass(frozen=True)
class KeyRule:
    """Source keys fully matching `pattern` become one or more target keys (`re` templates such as `\\1`)."""

    pattern: re.Pattern
    targets: tuple[tuple[str, Transform], ...]

    def apply(self, key: str, tensor: torch.Tensor) -> StateDict | None:
        match = self.pattern.fullmatch(key)
        if match is None:
            return None
        return {match.expand(template): transform(tensor) for template, transform in self.targets}


def _rule(source: str, target: str, transform: Transform = _same) -> KeyRule:
    return KeyRule(re.compile(source), ((target, transform),))


def _packed_rule(source: str, target: str) -> KeyRule:
    """A packed q/k/v tensor; `target` holds `{}` where `q`, `k` or `v` goes."""
    targets = tuple((target.format(name), partial(_packed_part, index=i)) for i, name in enumerate("qkv"))
    return KeyRule(re.compile(source), targets)


def _attention_rules(source: str, target: str) -> list[KeyRule]:
    """`nn.MultiheadAttention` (`in_proj_*`, `out_proj.*`) → separate `{q,k,v}_proj` and `out_proj` linears."""
    n = _groups(source) + 1  # the group number of weight|bias, after the layer index groups of `source`
    return [
        _packed_rule(rf"{source}\.in_proj_(weight|bias)", rf"{target}.{{}}_proj.\{n}"),
        _rule(rf"{source}\.out_proj\.(weight|bias)", rf"{target}.out_proj.\{n}"),
    ]


def _groups(pattern: str) -> int:
    return re.compile(pattern).groups


def _clip_block_rules(source: str, target: str) -> list[KeyRule]:
    """OpenAI CLIP `ResidualAttentionBlock` (`source` captures the layer index) → a CLIP-style HF layer."""
    n = _groups(source) + 1
    return [
        *_attention_rules(rf"{source}\.attn", rf"{target}.self_attn"),
        _rule(rf"{source}\.ln_1\.(weight|bias)", rf"{target}.layer_norm1.\{n}"),
        _rule(rf"{source}\.ln_2\.(weight|bias)", rf"{target}.layer_norm2.\{n}"),
        _rule(rf"{source}\.mlp\.c_fc\.(weight|bias)", rf"{target}.mlp.fc1.\{n}"),
        _rule(rf"{source}\.mlp\.c_proj\.(weight|bias)", rf"{target}.mlp.fc2.\{n}"),
    ]


def _build_official_rules() -> tuple[KeyRule, ...]:
    vision, text = r"clip\.visual", r"clip"
    ast = r"clip\.audio\.v"
    resampler, fusion = r"transformer_Fusion\.resblocks\.(\d+)", r"transformerClip\.resblocks\.(\d+)"
    return (
        # CLIP vision tower
        _rule(rf"{vision}\.conv1\.weight", "vision_model.embeddings.patch_embedding.weight"),
        _rule(rf"{vision}\.class_embedding", "vision_model.embeddings.class_embedding"),
        _rule(rf"{vision}\.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
        _rule(rf"{vision}\.ln_pre\.(weight|bias)", r"vision_model.pre_layrnorm.\1"),
        *_clip_block_rules(rf"{vision}\.transformer\.resblocks\.(\d+)", r"vision_model.encoder.layers.\1"),
        _rule(rf"{vision}\.ln_post\.(weight|bias)", r"vision_model.post_layernorm.\1"),
        _rule(rf"{vision}\.proj", "visual_projection.weight", _transpose),
        # CLIP text tower
        _rule(rf"{text}\.token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
        _rule(rf"{text}\.positional_embedding", "text_model.embeddings.position_embedding.weight"),
        *_clip_block_rules(rf"{text}\.transformer\.resblocks\.(\d+)", r"text_model.encoder.layers.\1"),
        _rule(rf"{text}\.ln_final\.(weight|bias)", r"text_model.final_layer_norm.\1"),
        _rule(rf"{text}\.text_projection", "text_projection.weight", _transpose),
        _rule(rf"{text}\.logit_scale", "logit_scale"),
        # AST (timm DeiT names)
        _rule(rf"{ast}\.cls_token", "audio_model.embeddings.cls_token"),
        _rule(rf"{ast}\.dist_token", "audio_model.embeddings.distillation_token"),
        _rule(rf"{ast}\.pos_embed", "audio_model.embeddings.position_embeddings"),
        _rule(rf"{ast}\.patch_embed\.proj\.(weight|bias)", r"audio_model.embeddings.patch_embeddings.projection.\1"),
        _packed_rule(rf"{ast}\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"audio_model.layers.\1.attention.{}_proj.\2"),
        _rule(rf"{ast}\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"audio_model.layers.\1.attention.o_proj.\2"),
        _rule(rf"{ast}\.blocks\.(\d+)\.norm1\.(weight|bias)", r"audio_model.layers.\1.layernorm_before.\2"),
        _rule(rf"{ast}\.blocks\.(\d+)\.norm2\.(weight|bias)", r"audio_model.layers.\1.layernorm_after.\2"),
        _rule(rf"{ast}\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"audio_model.layers.\1.mlp.\2.\3"),
        _rule(rf"{ast}\.norm\.(weight|bias)", r"audio_model.layernorm.\1"),
        _rule(r"clip\.audio_projection", "audio_projection.weight", _transpose),
        # Frame positions and the audio resampler (the official `Transformer_Text`)
        _rule(r"frame_position_embeddings\.weight", "frame_position_embedding.weight"),
        _rule(r"query_tokens", "audio_resampler.query_tokens", _transpose),
        _rule(r"query_position_embeddings\.weight", "audio_resampler.query_position_embedding"),
        *_clip_block_rules(resampler, r"audio_resampler.layers.\1"),
        *_attention_rules(rf"{resampler}\.cross_attn", r"audio_resampler.layers.\1.cross_attn"),
        _rule(rf"{resampler}\.ln_3\.(weight|bias)", r"audio_resampler.layers.\1.layer_norm_cross.\2"),
        # Gated fusion transformer (the official `Transformer_Gate`)
        *_clip_block_rules(fusion, r"fusion.layers.\1"),
        *_attention_rules(rf"{fusion}\.cross_attn", r"fusion.layers.\1.cross_attn"),
        _rule(rf"{fusion}\.ln_3\.(weight|bias)", r"fusion.layers.\1.layer_norm_cross.\2"),
        _rule(rf"{fusion}\.ln_4\.(weight|bias)", r"fusion.layers.\1.layer_norm_ffn.\2"),
        _rule(rf"{fusion}\.cross_ff\.cross_fc\.weight", r"fusion.layers.\1.cross_ffn.fc1.weight"),
        _rule(rf"{fusion}\.cross_ff\.cross_proj\.weight", r"fusion.layers.\1.cross_ffn.fc2.weight"),
        _rule(rf"{fusion}\.attn_gate\.ag_fc\.weight", r"fusion.layers.\1.attn_gate.fc1.weight"),
        _rule(rf"{fusion}\.attn_gate\.ag_proj\.weight", r"fusion.layers.\1.attn_gate.fc2.weight"),
        _rule(rf"{fusion}\.ff_gate\.fg_fc\.weight", r"fusion.layers.\1.ffn_gate.fc1.weight"),
        _rule(rf"{fusion}\.ff_gate\.fg_proj\.weight", r"fusion.layers.\1.ffn_gate.fc2.weight"),
    )


OFFICIAL_KEY_RULES: tuple[KeyRule, ...] = _build_official_rules()

# Source keys that are known and deliberately dropped: DeiT's classification heads, AST's AudioSet classifier and
# the integer metadata entries of OpenAI's CLIP files.
IGNORED_KEY_PATTERNS: tuple[re.Pattern, ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"clip\.audio\.v\.(head|head_dist)\.(weight|bias)",
        r"clip\.audio\.mlp_head\..*",
        r"clip\.(input_resolution|context_length|vocab_size)",
    )
)


# ---------------------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What happened to every key; `is_complete` is False when anything needs attention."""

    unmapped_keys: list[str] = field(default_factory=list)  # source keys no rule (and no ignore pattern) matched
    ignored_keys: list[str] = field(default_factory=list)  # known unused source keys, dropped
    missing_keys: list[str] = field(default_factory=list)  # model keys the source did not fill
    unexpected_keys: list[str] = field(default_factory=list)  # converted keys the model does not have
    shape_mismatches: list[str] = field(default_factory=list)  # "key: checkpoint [..] vs model [..]"
    initialized_keys: list[str] = field(default_factory=list)  # new-module keys given the paper's initialisation

    @property
    def is_complete(self) -> bool:
        return not (self.unmapped_keys or self.missing_keys or self.unexpected_keys or self.shape_mismatches)

    def format(self) -> str:
        """A readable listing of every problem (and the dropped and initialised keys, for the record)."""
        lines = []
        for title, keys in (
            ("unmapped source keys", self.unmapped_keys),
            ("model keys missing from the checkpoint", self.missing_keys),
            ("converted keys the model does not have", self.unexpected_keys),
            ("shape mismatches", self.shape_mismatches),
            ("ignored source keys (known unused)", self.ignored_keys),
            ("new-module keys initialised as in the paper", self.initialized_keys),
        ):
            if keys:
                lines.append(f"{title} ({len(keys)}):")
                lines.extend(f"  {key}" for key in keys)
        return "\n".join(lines) if lines else "all keys converted"


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, list[str], list[str]]:
    """
    Rename (and split or transpose) an official-layout state dict into [`AvigateModel`] keys.

    Returns:
        `(converted, unmapped_keys, ignored_keys)`.
    """
    converted: StateDict = {}
    unmapped, ignored = [], []
    for key, tensor in state_dict.items():
        for rule in OFFICIAL_KEY_RULES:
            renamed = rule.apply(key, tensor)
            if renamed is not None:
                converted.update(renamed)
                break
        else:
            if any(pattern.fullmatch(key) for pattern in IGNORED_KEY_PATTERNS):
                ignored.append(key)
            else:
                unmapped.append(key)
    return converted, sorted(unmapped), sorted(ignored)


def clip_ast_to_official_layout(
    clip_state_dict: Mapping[str, torch.Tensor], ast_state_dict: Mapping[str, torch.Tensor]
) -> StateDict:
    """Put an OpenAI CLIP state dict (`visual.*`, `transformer.*`, ...) and an original AST state dict
    (`module.v.*`, `module.mlp_head.*`; the `module.` prefix optional) under the official checkpoint's prefixes."""
    combined = {f"clip.{key}": tensor for key, tensor in clip_state_dict.items()}
    for key, tensor in _strip_prefix(ast_state_dict, "module.").items():
        combined[f"clip.audio.{key}"] = tensor
    return combined


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """Drop a DataParallel-style `prefix` when every key carries it."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: tensor for key, tensor in state_dict.items()}
    return dict(state_dict)


def _count_layers(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _require(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"Cannot infer the config: the weights have no {key!r}, so they are not an AVIGATE, OpenAI "
                         "CLIP ViT or AST checkpoint of the expected layout; pass an explicit config (--config)")
    return state_dict[key]


def infer_config_kwargs(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """
    [`AvigateConfig`] keyword arguments read off the shapes of an official-layout state dict (ViT CLIP only).
    Head counts assume 64-dimensional heads (true for every OpenAI CLIP ViT and AST); AST strides, mel bins and
    frame count keep `ASTConfig`'s defaults (the official 10/10, 128, 1024), which the position table's shape checks.
    Resampler/fusion sizes and the number of audio queries fall back to the paper's defaults when absent (CLIP + AST).
    """
    conv = _require(state_dict, "clip.visual.conv1.weight")
    vision_width, patch_size = conv.shape[0], conv.shape[-1]
    grid = round((_require(state_dict, "clip.visual.positional_embedding").shape[0] - 1) ** 0.5)
    text_width = _require(state_dict, "clip.ln_final.weight").shape[0]
    audio_width = _require(state_dict, "clip.audio.v.cls_token").shape[-1]
    kwargs = dict(
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=_require(state_dict, "clip.visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
            num_hidden_layers=_count_layers(state_dict, "clip.visual.transformer.resblocks."),
            num_attention_heads=max(1, vision_width // HEAD_DIM),
            image_size=grid * patch_size,
            patch_size=patch_size,
        ),
        text_config=dict(
            vocab_size=_require(state_dict, "clip.token_embedding.weight").shape[0],
            hidden_size=text_width,
            intermediate_size=_require(state_dict, "clip.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
            num_hidden_layers=_count_layers(state_dict, "clip.transformer.resblocks."),
            num_attention_heads=max(1, text_width // HEAD_DIM),
            max_position_embeddings=_require(state_dict, "clip.positional_embedding").shape[0],
        ),
        audio_config=dict(
            hidden_size=audio_width,
            intermediate_size=_require(state_dict, "clip.audio.v.blocks.0.mlp.fc1.weight").shape[0],
            num_hidden_layers=_count_layers(state_dict, "clip.audio.v.blocks."),
            num_attention_heads=max(1, audio_width // HEAD_DIM),
            layer_norm_eps=TIMM_LAYER_NORM_EPS,
        ),
        projection_dim=_require(state_dict, "clip.text_projection").shape[1],
    )
    projection_dim = kwargs["projection_dim"]
    kwargs["fusion_num_attention_heads"] = max(1, projection_dim // HEAD_DIM)
    if "query_tokens" in state_dict:
        kwargs["num_audio_queries"] = state_dict["query_tokens"].shape[1]
    if "frame_position_embeddings.weight" in state_dict:
        kwargs["max_frames"] = state_dict["frame_position_embeddings.weight"].shape[0]
    for name, prefix in (("resampler_num_layers", "transformer_Fusion.resblocks."),
                         ("fusion_num_layers", "transformerClip.resblocks.")):
        if num_layers := _count_layers(state_dict, prefix):
            kwargs[name] = num_layers
    return kwargs


def initialize_new_modules(model: AvigateModel) -> None:
    """The paper's initialisation of the modules CLIP and AST lack: resampler and fusion self-attention, MLP and
    LN1/LN2 from CLIP text layers, frame positions from CLIP's text positions (the rest keeps `_init_weights`)."""
    copy_clip_text_layers(model.audio_resampler.layers, model.text_model, "audio_resampler.layers")
    copy_clip_text_layers(model.fusion.layers, model.text_model, "fusion.layers")
    copy_frame_positions(model.frame_position_embedding, model.text_model.embeddings.position_embedding)


def build_model_from_official_layout(
    state_dict: Mapping[str, torch.Tensor],
    config: AvigateConfig | None = None,
    *,
    initial_model: bool = False,
    allow_partial: bool = False,
) -> tuple[AvigateModel, ConversionReport]:
    """
    Convert an official-layout state dict and load it into a new [`AvigateModel`].

    Args:
        state_dict: official checkpoint keys (or [`clip_ast_to_official_layout`]'s output).
        config: the target config; inferred from the weights' shapes when omitted ([`infer_config_kwargs`]).
        initial_model: the source is CLIP + AST only; the new modules get the paper's initialisation instead of
            being reported missing.
        allow_partial: return the model even when keys are unmapped, missing, unexpected or mis-shaped.

    Raises:
        ValueError: the conversion is incomplete and `allow_partial` is False; the message lists every key.
    """
    if config is None:
        config = AvigateConfig(**infer_config_kwargs(state_dict))
    converted, unmapped, ignored = convert_official_state_dict(state_dict)
    model = AvigateModel(config)
    expected = model.state_dict()
    report = ConversionReport(unmapped_keys=unmapped, ignored_keys=ignored)
    report.unexpected_keys = sorted(set(converted) - set(expected))
    report.shape_mismatches = sorted(
        f"{key}: checkpoint {list(tensor.shape)} vs model {list(expected[key].shape)}"
        for key, tensor in converted.items()
        if key in expected and tensor.shape != expected[key].shape
    )
    missing = sorted(set(expected) - set(converted))
    if initial_model:
        report.initialized_keys = [key for key in missing if key.startswith(NEW_MODULE_PREFIXES)]
        missing = [key for key in missing if not key.startswith(NEW_MODULE_PREFIXES)]
    report.missing_keys = missing
    if not report.is_complete and not allow_partial:
        raise ValueError(f"Incomplete conversion (pass allow_partial=True / --allow-partial to write it anyway):\n"
                         f"{report.format()}")
    loadable = {
        key: tensor for key, tensor in converted.items() if key in expected and tensor.shape == expected[key].shape
    }
    # load_state_dict casts the official fp16 CLIP weights to the model's fp32 parameters.
    model.load_state_dict(loadable, strict=False)
    if initial_model:
        initialize_new_modules(model)
    return model, report


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def weights_only_refusal(path: str | Path, error: pickle.UnpicklingError) -> ValueError:
    """The one-line error for a file that `torch.load(weights_only=True)` refused. torch's own message advises
    re-running with `weights_only=False`, which would run the file's code: this one names the file and torch's reason
    and advises a conversion instead."""
    message = str(error)
    if not message.startswith("Weights only load failed"):
        reason = message.splitlines()[0] if message else "unpickling failed"
        return ValueError(f"{path} is not a readable PyTorch checkpoint ({reason})")
    refused = re.search(r"GLOBAL ([\w.]+)", message)
    names = f" (it names {refused.group(1)})" if refused else ""
    return ValueError(f"{path} holds pickled objects besides tensors{names}; weights-only loading refused it and "
                      "nothing in it ran. Convert it to safetensors with a tool you trust")


def load_original_state_dict(path: str | Path) -> StateDict:
    """
    Load a state dict without running code from the file: `.safetensors` with safetensors, TorchScript archives
    (OpenAI's `ViT-B-32.pt`) with [`read_torchscript_tensors`] (their tensors only: `torch.jit.load` would run the
    archive's code), anything else with `torch.load(weights_only=True)`. A `{"state_dict": ...}` or `{"model": ...}`
    wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}")
    if path.suffix == ".safetensors":
        return load_file(path)
    if _is_torchscript_archive(path):
        return read_torchscript_tensors(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise weights_only_refusal(path, error) from error
    except Exception as error:  # the loader's message alone does not say which file failed
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"Cannot load {path} as a tensor checkpoint: {reason}") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(loaded)


def convert_avigate_original_checkpoint(
    output_dir: str | Path,
    *,
    checkpoint_path: str | Path | None = None,
    clip_checkpoint_path: str | Path | None = None,
    ast_checkpoint_path: str | Path | None = None,
    config: AvigateConfig | None = None,
    config_overrides: Mapping | None = None,
    allow_partial: bool = False,
) -> ConversionReport:
    """
    Convert original weights and `save_pretrained` the model (safetensors, config, remote code) into `output_dir`.

    Pass either `checkpoint_path` (an official AVIGATE training checkpoint) or both `clip_checkpoint_path` (OpenAI
    CLIP `.pt`) and `ast_checkpoint_path` (original AST `.pth`) for the paper's initial model.

    Args:
        output_dir: folder to write.
        config: target config; inferred from the weights when omitted.
        config_overrides: [`AvigateConfig`] fields applied on top of the inferred config (e.g. `{"margin_max": 0.05}`
            for VATEX); ignored when `config` is given.
        allow_partial: write the model even if the conversion is incomplete (the report lists what is wrong).

    Returns:
        The [`ConversionReport`].
    """
    if checkpoint_path is not None and (clip_checkpoint_path or ast_checkpoint_path):
        raise ValueError("Pass either checkpoint_path or clip_checkpoint_path + ast_checkpoint_path, not both")
    if checkpoint_path is not None:
        state_dict = _strip_prefix(load_original_state_dict(checkpoint_path), "module.")
        initial_model = False
    elif clip_checkpoint_path is not None and ast_checkpoint_path is not None:
        state_dict = clip_ast_to_official_layout(
            load_original_state_dict(clip_checkpoint_path), load_original_state_dict(ast_checkpoint_path)
        )
        initial_model = True
    else:
        raise ValueError("Pass checkpoint_path, or both clip_checkpoint_path and ast_checkpoint_path")
    if config is None:
        config = AvigateConfig(**{**infer_config_kwargs(state_dict), **(config_overrides or {})})
    model, report = build_model_from_official_layout(
        state_dict, config, initial_model=initial_model, allow_partial=allow_partial
    )
    model.save_pretrained(output_dir)
    return report
