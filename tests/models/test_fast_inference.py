"""prepare_for_inference: which modules change, that the caller's model does not, and that the embeddings stay close
to fp32; its use by VideoIndex, the audio cache and the CLI."""

import pytest
import torch
from torch import nn

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.fast_inference import (
    ENCODER_PRECISIONS,
    check_encoder_precision,
    prepare_for_inference,
    quantize_linear_int8,
)
from modeling_avigate.fingerprints import weights_fingerprint
from modeling_avigate.embedding import EmbeddingOptions, audio_cache_fingerprint
from modeling_avigate.search import VideoIndex

from conftest import tiny_config_kwargs
from builders import tiny_processor_and_model, write_clips


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(1)
    return dict(pixel_values=torch.randn(3, 3, 3, 32, 32, generator=generator),
                video_mask=torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]),
                input_values=torch.randn(3, 1024, 128, generator=generator),
                has_audio=torch.tensor([True, True, False]))


def video_features(model, inputs):
    with torch.no_grad():
        return model.get_video_features(**inputs)


def count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(layer, kind) for layer in module.modules())


def test_fp32_is_the_model_itself_in_eval_mode(model):
    model.train()
    assert prepare_for_inference(model, "fp32") is model
    assert not model.training


def test_int8_quantises_only_the_encoders_and_leaves_the_model_untouched(model, inputs):
    fingerprint = weights_fingerprint(model)
    reference = video_features(model, inputs)
    fast = prepare_for_inference(model, "int8")

    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    for name in ("vision_model", "audio_model"):
        assert count(getattr(fast, name), nn.Linear) == 0
        assert count(getattr(fast, name), DynamicQuantizedLinear) == count(getattr(model, name), nn.Linear) > 0
    for name in ("text_model", "audio_resampler", "fusion", "visual_projection", "audio_projection"):
        assert getattr(fast, name) is getattr(model, name)
    assert count(model, DynamicQuantizedLinear) == 0
    assert weights_fingerprint(model) == fingerprint
    assert torch.equal(video_features(model, inputs).last_hidden_state, reference.last_hidden_state)

    outputs = video_features(fast, inputs)
    assert outputs.last_hidden_state.dtype == torch.float32
    real = inputs["video_mask"].bool()
    cosine = nn.functional.cosine_similarity(outputs.last_hidden_state[real], reference.last_hidden_state[real], dim=-1)
    assert cosine.min() > 0.99


def test_int8_audio_quantises_only_the_audio_encoder(model, inputs):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    reference = video_features(model, inputs)
    fast = prepare_for_inference(model, "int8-audio")
    assert fast.vision_model is model.vision_model
    assert count(fast.audio_model, nn.Linear) == 0
    assert count(fast.audio_model, DynamicQuantizedLinear) == count(model.audio_model, nn.Linear) > 0
    outputs = video_features(fast, inputs)
    real = inputs["video_mask"].bool()
    cosine = nn.functional.cosine_similarity(outputs.last_hidden_state[real], reference.last_hidden_state[real], dim=-1)
    assert cosine.min() > 0.99 and not torch.equal(outputs.last_hidden_state, reference.last_hidden_state)


def test_int8_linear_is_within_the_quantisation_error_of_fp32():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    inputs = torch.randn(8, 64)
    quantized = quantize_linear_int8(nn.Sequential(linear))[0]
    # int8 weights with one scale per output channel, whose step is at most max|w|/127 over the whole matrix, and
    # activations with step range/255; each product's rounding error is at most half a step of each factor.
    weight_step = linear.weight.abs().max() / 127
    input_step = (inputs.max() - inputs.min()) / 255
    bound = 64 * (weight_step / 2 * inputs.abs().max() + input_step / 2 * linear.weight.abs().max()
                  + weight_step * input_step / 4)
    error = (quantized(inputs) - linear(inputs)).abs().max()
    assert 0 < error <= bound


def test_bf16_runs_the_encoders_in_bf16_and_returns_float32(model, inputs):
    reference = video_features(model, inputs)
    fast = prepare_for_inference(model, "bf16")
    assert fast.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert fast.audio_model.layers[0].attention.q_proj.weight.dtype == torch.bfloat16
    assert fast.audio_model.layernorm is model.audio_model.layernorm
    assert model.vision_model.embeddings.patch_embedding.weight.dtype == torch.float32

    with torch.no_grad():
        states = fast.get_audio_hidden_states(inputs["input_values"])
        reference_states = model.get_audio_hidden_states(inputs["input_values"])
    assert states.dtype == torch.float32
    assert nn.functional.cosine_similarity(states, reference_states, dim=-1).min() > 0.99
    outputs = video_features(fast, inputs)
    real = inputs["video_mask"].bool()
    cosine = nn.functional.cosine_similarity(outputs.last_hidden_state[real], reference.last_hidden_state[real], dim=-1)
    assert cosine.min() > 0.99


@pytest.mark.parametrize("precision, device, message", [
    ("fp16", "cpu", "encoder_precision must be one of fp32, int8, int8-audio, bf16"),
    ("int8", "cuda", "runs on the CPU only"),
    ("int8-audio", "cuda", "runs on the CPU only"),
])
def test_unknown_or_misplaced_precision_is_refused(precision, device, message):
    with pytest.raises(ValueError, match=message):
        check_encoder_precision(precision, device)


def test_cli_choices_are_the_module_precisions():
    from modeling_avigate.cli import build_parser

    parser = build_parser()
    for command in ("index", "eval"):
        subparser = parser._subparsers._group_actions[0].choices[command]
        option = next(action for action in subparser._actions if action.dest == "encoder_precision")
        assert tuple(option.choices) == ENCODER_PRECISIONS


def test_audio_cache_fingerprint_names_non_fp32_precisions(model, tmp_path):
    processor, _ = tiny_processor_and_model(tmp_path)
    fp32 = audio_cache_fingerprint(model, processor, "videos")
    assert audio_cache_fingerprint(model, processor, "videos", "fp32") == fp32
    assert len({fp32, audio_cache_fingerprint(model, processor, "videos", "int8"),
                audio_cache_fingerprint(model, processor, "videos", "bf16")}) == 3


def test_int8_index_is_close_to_fp32_and_keeps_the_model_fingerprint(tmp_path):
    processor, model = tiny_processor_and_model(tmp_path)
    folder = str(tmp_path / "videos")
    write_clips(folder, 4)
    fp32 = VideoIndex.build(model, processor, folder, EmbeddingOptions(batch_size=2, progress=False))
    int8 = VideoIndex.build(model, processor, folder,
                            EmbeddingOptions(batch_size=2, progress=False, encoder_precision="int8"))
    assert int8.paths == fp32.paths
    assert torch.equal(int8.video_mask, fp32.video_mask)
    real = fp32.video_mask
    cosine = nn.functional.cosine_similarity(int8.frame_embeds[real].float(), fp32.frame_embeds[real].float(), dim=-1)
    assert cosine.min() > 0.99
    int8.check_model(model, processor)


def test_cli_index_passes_the_precision_through(tmp_path):
    from modeling_avigate.cli import main

    processor, model = tiny_processor_and_model(tmp_path)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    folder = str(tmp_path / "videos")
    write_clips(folder, 3)
    assert main(["index", folder, "--model", str(tmp_path / "model"), "--out", str(tmp_path / "gallery"),
                 "--num-workers", "0", "--device", "cpu", "--encoder-precision", "int8"]) == 0
    saved = VideoIndex.load(tmp_path / "gallery")
    int8 = VideoIndex.build(model, processor, folder, EmbeddingOptions(progress=False, encoder_precision="int8"))
    fp32 = VideoIndex.build(model, processor, folder, EmbeddingOptions(progress=False))
    assert torch.equal(saved.frame_embeds, int8.frame_embeds)
    assert not torch.equal(saved.frame_embeds, fp32.frame_embeds)
