"""Faster inference copies of an `AvigateModel` for embedding videos: the frozen CLIP vision tower and AST encoder,
which take nearly all of a video's embedding time, run in int8 (CPU) or bf16 (GPU); everything else is unchanged.

Measured with `benchmarks/bench_embed.py` and `benchmarks/bench_accuracy.py` on a 2-core CPU (see
`docs/benchmarks.md`): int8 for both encoders is 2.0× faster end to end than the naive fp32 loop, with frame
embeddings within a cosine of 0.9998 of fp32, but it can reorder near-tied results; int8 for the AST alone
(`"int8-audio"`) is 1.47× faster and kept R@1 and 99.9 % of the top-10 results. Neither is the default.
"""

import copy
import warnings
from typing import Literal, get_args

import torch
from torch import nn

from .modeling_avigate import AvigateModel


EncoderPrecision = Literal["fp32", "int8", "int8-audio", "bf16"]
ENCODER_PRECISIONS: tuple[str, ...] = get_args(EncoderPrecision)
DEFAULT_ENCODER_PRECISION: EncoderPrecision = "fp32"


def check_encoder_precision(precision: str, device: torch.device | str) -> None:
    """Raise a `ValueError` naming `encoder_precision` when `precision` is unknown or cannot run on `device`."""
    if precision not in ENCODER_PRECISIONS:
        raise ValueError(f"encoder_precision must be one of {', '.join(ENCODER_PRECISIONS)}, got {precision!r}")
    if precision.startswith("int8") and torch.device(device).type != "cpu":
        raise ValueError(f"encoder_precision={precision!r} (dynamic quantisation) runs on the CPU only, the model is "
                         f"on {device}; use 'bf16' on a GPU")


def quantize_linear_int8(module: nn.Module) -> nn.Module:
    """A copy of `module` whose `nn.Linear` layers hold int8 weights and quantise their inputs per call (dynamic
    quantisation with torch's fbgemm/x86 kernels).

    `torch.ao.quantization` is deprecated in favour of torchao, but torchao's CPU int8 path without
    `torch.compile` was slower than fp32 here (AST: 4.07 s vs 3.83 s per clip), so the maintained-in-torch kernels
    are used and their deprecation warnings silenced.

    Example:

    ```python
    >>> import torch
    >>> from torch import nn
    >>> from modeling_avigate.fast_inference import quantize_linear_int8
    >>> quantized = quantize_linear_int8(nn.Sequential(nn.Linear(4, 2)))
    >>> quantized[0].weight().dtype, quantized(torch.ones(1, 4)).shape
    (torch.qint8, torch.Size([1, 2]))
    ```
    """
    # The copy shares the float linear weights instead of duplicating them (most of an encoder's memory): quantising
    # reads them and replaces each layer of the copy, so the original's weights are never written.
    shared = {id(tensor): tensor for layer in module.modules() if isinstance(layer, nn.Linear)
              for tensor in layer.parameters()}
    copied = copy.deepcopy(module, shared)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # One scale per output channel instead of one per weight matrix: the same speed, and the weights' rounding
        # error no longer grows with the matrix's largest entry.
        return quantize_dynamic(copied, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def _bfloat16_if_float(value):
    return value.to(torch.bfloat16) if torch.is_tensor(value) and value.is_floating_point() else value


def _to_bfloat16_inputs(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    return tuple(map(_bfloat16_if_float, args)), {name: _bfloat16_if_float(value) for name, value in kwargs.items()}


def _to_float32_outputs(module: nn.Module, args: tuple, kwargs: dict, output):
    if torch.is_tensor(output):
        return output.float()
    for name, value in output.items():
        if torch.is_tensor(value) and value.is_floating_point():
            output[name] = value.float()
    return output


def cast_bfloat16(module: nn.Module, entry: nn.Module | None = None, exit: nn.Module | None = None) -> nn.Module:
    """A bf16 copy of `module` whose `entry` submodule (default: the module itself) casts its floating inputs to bf16
    and whose `exit` submodule casts its outputs back to float32, so callers keep passing and receiving float32.

    `entry` and `exit` are submodules of `module`, found in the copy by name. The casts run before any hook already
    on those submodules: transformers' output-capturing hooks (copied with the module once installed) then record
    the float32 states, which is how `get_audio_hidden_states` reads the AST's last layer.
    """
    names = {submodule: name for name, submodule in module.named_modules()}
    casted = copy.deepcopy(module).to(torch.bfloat16)
    entry_copy = casted.get_submodule(names[entry if entry is not None else module])
    exit_copy = casted.get_submodule(names[exit if exit is not None else module])
    entry_copy.register_forward_pre_hook(_to_bfloat16_inputs, with_kwargs=True, prepend=True)
    exit_copy.register_forward_hook(_to_float32_outputs, with_kwargs=True, prepend=True)
    return casted


def prepare_for_inference(model: AvigateModel, precision: EncoderPrecision = DEFAULT_ENCODER_PRECISION) -> AvigateModel:
    r"""
    An eval-mode model for embedding videos whose frozen encoders (`vision_model` and the AST layers behind
    `get_audio_hidden_states`) run at `precision`:

    - `"fp32"`: `model` itself, in eval mode;
    - `"int8"` (CPU): the encoders' linear layers dynamically quantised to int8;
    - `"int8-audio"` (CPU): only the AST's, the vision tower stays fp32. The full-size model adds the fused frames at
      weight 0.05, so the AST's rounding all but vanishes from the embeddings (cosine 1.00000 to fp32 on the random
      full-size model, where int8 for both encoders gives 0.9998); it saves about half the AST's time;
    - `"bf16"` (GPU, or CPUs with bf16 instructions): the encoders in bf16, returning float32.

    The text tower, projections, audio resampler, fusion and the AST's final LayerNorm are shared with `model`, not
    copied; `model` itself is left unchanged (its weights and their fingerprint stay the same).

    Example:

    ```python
    >>> import torch
    >>> from modeling_avigate import AvigateConfig, AvigateModel
    >>> from modeling_avigate.fast_inference import prepare_for_inference
    >>> from modeling_avigate.testing_utils import tiny_config_kwargs
    >>> model = AvigateModel(AvigateConfig(**tiny_config_kwargs()))
    >>> fast = prepare_for_inference(model, "int8")
    >>> fast.vision_model.encoder.layers[0].mlp.fc1.weight().dtype, fast.text_model is model.text_model
    (torch.qint8, True)
    >>> outputs = fast.get_video_features(torch.randn(1, 3, 3, 32, 32), input_values=torch.randn(1, 1024, 128))
    >>> outputs.pooler_output.shape
    torch.Size([1, 32])
    ```
    """
    check_encoder_precision(precision, model.device)
    model.eval()
    if precision == "fp32":
        return model
    # A shallow copy with its own submodule table: replacing the encoders below leaves `model` untouched while every
    # other weight is shared rather than duplicated.
    fast = copy.copy(model)
    fast._modules = dict(model._modules)
    audio = model.audio_model
    if precision == "int8":
        fast.vision_model = quantize_linear_int8(model.vision_model)
        fast.audio_model = quantize_linear_int8(audio)
    elif precision == "int8-audio":
        fast.audio_model = quantize_linear_int8(audio)
    else:
        fast.vision_model = cast_bfloat16(model.vision_model)
        fast.audio_model = cast_bfloat16(audio, entry=audio.embeddings, exit=audio.layers[-1])
        # `get_audio_features` applies the AST's final LayerNorm to float32 states: keep it in float32.
        fast.audio_model.layernorm = audio.layernorm
    return fast
