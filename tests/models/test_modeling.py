"""AvigateModel: similarity, loss, gates, invariances, serialisation, paper initialisation, attention backends, init."""

import logging
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_config_kwargs, tiny_token_ids
from torch import nn
from transformers import ASTConfig, ASTForAudioClassification, ASTModel, AutoModel, CLIPConfig, CLIPModel

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.loss_avigate import adaptive_margin, avigate_contrastive_loss, symmetric_contrastive_loss
from modeling_avigate.modeling_avigate import multi_grained_similarity, pool_video_embeds


NUM_VIDEOS, NUM_FRAMES, TEXT_LENGTH = 3, 4, 6
EOS_ID = tiny_token_ids()["eos_token_id"]


def build_model(attn_implementation: str = "sdpa", seed: int = 0, **overrides) -> AvigateModel:
    """A tiny model with a fresh config (sub-configs are shared objects, so every model gets its own)."""
    torch.manual_seed(seed)
    config = AvigateConfig(**tiny_config_kwargs(**overrides))
    return AvigateModel._from_config(config, attn_implementation=attn_implementation).eval()


def build_inputs(num_videos: int = NUM_VIDEOS, num_frames: int = NUM_FRAMES, seed: int = 1) -> dict:
    """Matching text/video pairs; video 1 has only 2 real frames (its padded frames hold noise), video 2 no sound."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, EOS_ID - 1, (num_videos, TEXT_LENGTH), generator=generator)
    input_ids[:, -1] = EOS_ID  # CLIP pools the text at its first EOS token
    video_mask = torch.ones(num_videos, num_frames, dtype=torch.long)
    if num_videos > 1:
        video_mask[1, 2:] = 0
    has_audio = torch.ones(num_videos, dtype=torch.bool)
    if num_videos > 2:
        has_audio[2] = False
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(num_videos, num_frames, 3, 32, 32, generator=generator),
        "video_mask": video_mask,
        "input_values": torch.randn(num_videos, 1024, 128, generator=generator),
        "has_audio": has_audio,
    }


def video_inputs(inputs: dict) -> dict:
    return {key: inputs[key] for key in ("pixel_values", "video_mask", "input_values", "has_audio")}


@pytest.fixture(scope="module")
def model() -> AvigateModel:
    return build_model()


@pytest.fixture(scope="module")
def inputs() -> dict:
    return build_inputs()


def random_unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# 1. Similarity
# ---------------------------------------------------------------------------------------------------------------


def naive_similarity(text, frames, mask, sigma: float, lse_temperature: float) -> torch.Tensor:
    """The multi-grained score with Python loops in float64: s_g on the renormalised mean of real frames, s_l a log-sum-exp."""
    scores = torch.zeros(len(text), len(frames), dtype=torch.float64)
    for t in range(len(text)):
        for v in range(len(frames)):
            real = [frames[v, i].double() for i in range(frames.shape[1]) if mask[v, i]]
            mean = sum(real) / len(real)
            global_score = sigma * float(text[t].double() @ (mean / mean.norm()))
            exponents = [lse_temperature * sigma * float(text[t].double() @ frame) for frame in real]
            peak = max(exponents)
            local_score = (peak + math.log(sum(math.exp(x - peak) for x in exponents))) / lse_temperature
            scores[t, v] = (global_score + local_score) / 2
    return scores


def test_similarity_matches_naive_loop_with_padded_frames():
    text, frames = random_unit(3, 8, seed=0), random_unit(4, 5, 8, seed=1)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    frames[mask == 0] = 7.0  # garbage in padded slots must not leak into any score
    expected = naive_similarity(text, frames, mask, sigma=30.0, lse_temperature=0.5)

    scores = multi_grained_similarity(text, pool_video_embeds(frames, mask), frames, mask, 30.0, 0.5)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-4)
    for chunk_elements in (1, 2 * 3 * 5):  # one video per chunk, two videos per chunk
        video = pool_video_embeds(frames, mask)
        chunked = multi_grained_similarity(text, video, frames, mask, 30.0, 0.5, chunk_elements)
        torch.testing.assert_close(chunked, scores)


def test_model_similarity_matches_naive_loop():
    model = build_model(lse_temperature=0.5)
    text, frames = random_unit(2, 32, seed=2), random_unit(3, 4, 32, seed=3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]])
    with torch.no_grad():
        scores = model.similarity(text, frames, mask)
        chunked = model.similarity(text, frames, mask, chunk_elements=1)
    sigma = model.get_logit_scale().item()
    torch.testing.assert_close(scores.double(), naive_similarity(text, frames, mask, sigma, 0.5), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(chunked, scores)


def test_similarity_finite_at_cosine_one_and_sigma_100():
    # exp(100) overflows float32, so summing raw exponentials (as the reference does) would give inf here.
    assert torch.isinf(torch.exp(torch.tensor(100.0)))
    unit = random_unit(16, seed=4)
    text, frames = unit[None], unit.expand(2, 3, 16).clone()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    scores = multi_grained_similarity(text, pool_video_embeds(frames, mask), frames, mask, 100.0)
    expected = torch.tensor([[(100 + 100 + math.log(3)) / 2, (100 + 100 + math.log(2)) / 2]])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-3)


def test_forward_logits_are_model_similarity(model, inputs):
    with torch.no_grad():
        outputs = model(**inputs)
        scores = model.similarity(outputs.text_embeds, outputs.frame_embeds, outputs.video_mask)
    torch.testing.assert_close(outputs.logits_per_text, scores)
    torch.testing.assert_close(outputs.logits_per_video, scores.T)
    torch.testing.assert_close(outputs.video_embeds, pool_video_embeds(outputs.frame_embeds, outputs.video_mask))


# ---------------------------------------------------------------------------------------------------------------
# 2. Loss
# ---------------------------------------------------------------------------------------------------------------


def naive_symmetric_cross_entropy(logits: torch.Tensor) -> float:
    n = len(logits)
    rows = [-logits[i, i] + math.log(sum(math.exp(logits[i, j]) for j in range(n))) for i in range(n)]
    cols = [-logits[j, j] + math.log(sum(math.exp(logits[i, j]) for i in range(n))) for j in range(n)]
    return float(sum(rows) / n + sum(cols) / n) / 2


def naive_margin(text, video, margin_scale: float, margin_max: float) -> torch.Tensor:
    n = len(text)
    margin = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                cosine = (float(text[i] @ text[j]) + float(video[i] @ video[j])) / 2
                margin[i, j] = min(margin_scale * (1 - cosine), margin_max)
    return margin


def margin_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four pairs; pairs 0 and 1 are near-duplicates so their margin falls below the cap, the others hit it."""
    text, video = random_unit(4, 16, seed=5), random_unit(4, 16, seed=6)
    text[1] = nn.functional.normalize(text[0] + 0.05 * random_unit(16, seed=7), dim=-1)
    video[1] = nn.functional.normalize(video[0] + 0.05 * random_unit(16, seed=8), dim=-1)
    similarity = 10 * torch.randn(4, 4, generator=torch.Generator().manual_seed(9))
    return text.requires_grad_(), video.requires_grad_(), similarity.requires_grad_()


def test_adaptive_margin_matches_hand_computation():
    text, video, _ = margin_inputs()
    margin = adaptive_margin(text, video, margin_scale=0.5, margin_max=0.1)
    expected = naive_margin(text.detach(), video.detach(), 0.5, 0.1)
    torch.testing.assert_close(margin.double(), expected, rtol=1e-6, atol=1e-7)
    off_diagonal = expected[~torch.eye(4, dtype=torch.bool)]
    assert (off_diagonal < 0.1).any() and (off_diagonal == 0.1).any(), "both the cap and the uncapped branch are tested"
    assert torch.all(margin.diagonal() == 0) and not margin.requires_grad


def test_loss_matches_hand_computation_without_gradient_through_margin():
    text, video, similarity = margin_inputs()
    sigma = torch.tensor(20.0)
    loss = avigate_contrastive_loss(similarity, text, video, sigma, margin_scale=0.5, margin_max=0.1)
    logits = similarity.detach().double() + 20.0 * naive_margin(text.detach(), video.detach(), 0.5, 0.1)
    assert loss.item() == pytest.approx(naive_symmetric_cross_entropy(logits), rel=1e-5)

    loss.backward()
    assert text.grad is None and video.grad is None, "the margin must be computed without gradient"
    # d loss / d S of a symmetric cross-entropy: (row softmax + column softmax - 2 I) / (2 N).
    rows, cols = torch.softmax(logits, dim=1), torch.softmax(logits, dim=0)
    expected_grad = (rows + cols - 2 * torch.eye(4, dtype=torch.float64)) / 8
    torch.testing.assert_close(similarity.grad.double(), expected_grad, rtol=1e-4, atol=1e-6)


def test_zero_margin_is_plain_symmetric_infonce():
    text, video, similarity = margin_inputs()
    expected = naive_symmetric_cross_entropy(similarity.detach().double())
    loss = avigate_contrastive_loss(similarity, text, video, torch.tensor(20.0), margin_scale=0.5, margin_max=0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert symmetric_contrastive_loss(similarity).item() == pytest.approx(expected, rel=1e-5)


def test_forward_loss_uses_audio_free_embeddings_for_the_margin(model, inputs):
    with torch.no_grad():
        outputs = model(**inputs, return_loss=True)
    config = model.config
    margin = naive_margin(outputs.text_embeds, outputs.visual_embeds, config.margin_scale, config.margin_max)
    logits = outputs.logits_per_text.double() + outputs.logit_scale.item() * margin
    assert outputs.loss.item() == pytest.approx(naive_symmetric_cross_entropy(logits), rel=1e-5)
    frames = model.get_frame_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output
    expected_visual = pool_video_embeds(nn.functional.normalize(frames, dim=-1), inputs["video_mask"])
    torch.testing.assert_close(outputs.visual_embeds, expected_visual)


# ---------------------------------------------------------------------------------------------------------------
# 3. Gates
# ---------------------------------------------------------------------------------------------------------------


def test_gates_shape_range_and_gradients():
    model = build_model().train()
    inputs = build_inputs()
    inputs["has_audio"][:] = True
    outputs = model(**inputs, return_loss=True)
    num_layers = model.config.fusion_num_layers
    for gates in (outputs.attn_gates, outputs.ffn_gates):
        assert gates.shape == (NUM_VIDEOS, num_layers)
        assert torch.all(gates.abs() < 1) and torch.all(gates != 0)
    outputs.loss.backward()
    for layer in model.fusion.layers:
        for gate in (layer.attn_gate, layer.ffn_gate):
            for parameter in gate.parameters():
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_missing_audio_closes_gates_and_equals_audio_free_encoding(model, inputs):
    with torch.no_grad():
        with_audio = model.get_video_features(**video_inputs(inputs))
        without_audio = model.get_video_features(inputs["pixel_values"], inputs["video_mask"])
    silent = ~inputs["has_audio"]
    assert silent.any() and (~silent).any()
    for gates in (with_audio.attn_gates, with_audio.ffn_gates):
        assert torch.all(gates[silent] == 0) and torch.all(gates[~silent] != 0)
    for name in ("pooler_output", "last_hidden_state"):
        torch.testing.assert_close(with_audio[name][silent], without_audio[name][silent], rtol=0, atol=0, msg=name)
    assert torch.all(without_audio.attn_gates == 0) and torch.all(without_audio.ffn_gates == 0)
    assert not torch.allclose(with_audio.pooler_output[~silent], without_audio.pooler_output[~silent])


def test_missing_audio_is_fused_when_masking_is_off(inputs):
    model = build_model(mask_missing_audio=False)
    with torch.no_grad():
        outputs = model.get_video_features(**video_inputs(inputs))
    assert torch.all(outputs.attn_gates != 0)


@pytest.mark.parametrize("gate_mode, value", [("open", 1.0), ("closed", 0.0)])
def test_fixed_gate_modes(gate_mode, value, inputs):
    model = build_model(gate_mode=gate_mode, mask_missing_audio=False)
    with torch.no_grad():
        outputs = model.get_video_features(**video_inputs(inputs))
        audio_free = model.get_video_features(inputs["pixel_values"], inputs["video_mask"])
    assert torch.all(outputs.attn_gates == value) and torch.all(outputs.ffn_gates == value)
    if gate_mode == "closed":
        torch.testing.assert_close(outputs.pooler_output, audio_free.pooler_output, rtol=0, atol=0)
    else:
        assert not torch.allclose(outputs.pooler_output, audio_free.pooler_output)


def test_held_open_gates_compute_the_ungated_model_and_release_back_to_learned(inputs):
    from modeling_avigate.training import hold_gates_open

    learned = build_model(seed=3)
    ungated = build_model(seed=3, gate_mode="open")  # same seed, same weights
    video = video_inputs(inputs)
    with torch.no_grad():
        before = learned.get_video_features(**video)
        hold_gates_open(learned, True)
        held = learned.get_video_features(**video)
        reference = ungated.get_video_features(**video)
        hold_gates_open(learned, False)
        released = learned.get_video_features(**video)
    torch.testing.assert_close(held.pooler_output, reference.pooler_output, rtol=0, atol=0)
    assert torch.equal(held.attn_gates, reference.attn_gates) and not torch.equal(before.attn_gates, held.attn_gates)
    torch.testing.assert_close(released.pooler_output, before.pooler_output, rtol=0, atol=0)
    assert learned.config.gate_mode == "learned"  # what gets saved is unchanged


# ---------------------------------------------------------------------------------------------------------------
# 4. Padding and batching invariance
# ---------------------------------------------------------------------------------------------------------------


def test_extra_masked_frames_change_nothing(model, inputs):
    video = {key: value[:1] for key, value in video_inputs(inputs).items()}
    padded = dict(video)
    padded["pixel_values"] = torch.cat([video["pixel_values"], torch.randn(1, 3, 3, 32, 32)], dim=1)
    padded["video_mask"] = torch.cat([video["video_mask"], torch.zeros(1, 3, dtype=torch.long)], dim=1)
    text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
    with torch.no_grad():
        plain, extended = model.get_video_features(**video), model.get_video_features(**padded)
        scores = model.similarity(text, plain.last_hidden_state, plain.video_mask)
        padded_scores = model.similarity(text, extended.last_hidden_state, extended.video_mask)
    torch.testing.assert_close(
        extended.last_hidden_state[:, :NUM_FRAMES], plain.last_hidden_state, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(extended.pooler_output, plain.pooler_output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extended.attn_gates, plain.attn_gates, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded_scores, scores, rtol=1e-5, atol=1e-5)


def test_a_video_alone_equals_the_same_video_in_a_batch(model, inputs):
    with torch.no_grad():
        batch = model.get_video_features(**video_inputs(inputs))
        for index in range(NUM_VIDEOS):
            single = {key: value[index : index + 1] for key, value in video_inputs(inputs).items()}
            alone = model.get_video_features(**single)
            torch.testing.assert_close(alone.pooler_output[0], batch.pooler_output[index], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone.attn_gates[0], batch.attn_gates[index], rtol=1e-5, atol=1e-6)


def test_a_text_alone_equals_the_same_text_in_a_padded_batch(model, inputs):
    short = inputs["input_ids"][:1, 2:]  # ends with EOS; padded back to TEXT_LENGTH in the batch
    batch_ids = inputs["input_ids"].clone()
    batch_ids[0] = torch.cat([short[0], torch.full((2,), EOS_ID)])
    batch_mask = torch.ones_like(batch_ids)
    batch_mask[0, -2:] = 0
    with torch.no_grad():
        alone = model.get_text_features(short, torch.ones_like(short)).pooler_output
        batch = model.get_text_features(batch_ids, batch_mask).pooler_output
    torch.testing.assert_close(alone[0], batch[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# 5. Serialisation
# ---------------------------------------------------------------------------------------------------------------


def assert_same_outputs(outputs, expected) -> None:
    """Same weights give the same outputs up to float rounding: loaded tensors sit at other memory alignments, which
    can change the summation order of vectorised reductions (observed: 6e-11 on a gate value)."""
    for name in ("loss", "logits_per_text", "frame_embeds", "attn_gates"):
        torch.testing.assert_close(outputs[name], expected[name], rtol=1e-6, atol=1e-8, msg=name)


def test_save_and_load_round_trip(model, inputs, tmp_path):
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "configuration_avigate.py", "modeling_avigate.py", "loss_avigate.py"} <= {
        path.name for path in tmp_path.iterdir()
    }
    with torch.no_grad():
        expected = model(**inputs, return_loss=True)
        for loaded in (AvigateModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
            assert type(loaded) is AvigateModel
            for key, value in model.state_dict().items():
                assert torch.equal(loaded.state_dict()[key], value), key
            outputs = loaded.eval()(**inputs, return_loss=True)
            assert_same_outputs(outputs, expected)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from transformers import AutoConfig, AutoModel

    folder, inputs_path, outputs_path = sys.argv[1:]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert "modeling_avigate" not in sys.modules, "the installed package was imported"
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert config.model_type == "avigate"
    with torch.no_grad():
        outputs = model(**torch.load(inputs_path), return_loss=True)
    names = ("loss", "logits_per_text", "frame_embeds", "attn_gates")
    torch.save({name: outputs[name] for name in names}, outputs_path)
    """
)


def test_remote_code_folder_loads_in_a_fresh_process(model, inputs, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    torch.save(inputs, tmp_path / "inputs.pt")
    (tmp_path / "load.py").write_text(REMOTE_CODE_SCRIPT)
    # A neutral working directory and no PYTHONPATH, so only the saved folder can provide the code; the modules
    # cache goes to tmp so runs never share (or pollute) the user's cache.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        expected = model(**inputs, return_loss=True)
    assert_same_outputs(remote, expected)


# ---------------------------------------------------------------------------------------------------------------
# 6. Paper initialisation from CLIP and AST checkpoints
# ---------------------------------------------------------------------------------------------------------------


def save_tiny_clip_and_ast(folder, ast_class: type, text_intermediate_size: int = 128) -> tuple[CLIPModel, ASTModel]:
    """Random tiny CLIP (text width 32 = projection_dim) and AST checkpoints; returns the saved models."""
    kwargs = tiny_config_kwargs()
    torch.manual_seed(123)
    clip = CLIPModel(
        CLIPConfig(
            text_config=dict(kwargs["text_config"], intermediate_size=text_intermediate_size),
            vision_config=kwargs["vision_config"],
            projection_dim=32,
            logit_scale_init_value=3.0,
        )
    )
    audio = ast_class(ASTConfig(**kwargs["audio_config"], num_labels=3))
    clip.save_pretrained(folder / "clip")
    audio.save_pretrained(folder / "ast")
    return clip, getattr(audio, "audio_spectrogram_transformer", audio)


def assert_same_tensors(target: nn.Module, source: nn.Module) -> None:
    source_state, target_state = source.state_dict(), target.state_dict()
    assert source_state.keys() == target_state.keys()
    for key, value in source_state.items():
        assert torch.equal(target_state[key], value), key


TINY_OVERRIDES = dict(
    num_audio_queries=4, resampler_num_layers=2, fusion_num_layers=2, fusion_num_attention_heads=4, max_frames=16
)


@pytest.mark.parametrize("ast_class", [ASTModel, ASTForAudioClassification])
def test_from_clip_ast_pretrained_copies_every_tensor(ast_class, tmp_path):
    clip, audio = save_tiny_clip_and_ast(tmp_path, ast_class)
    model = AvigateModel.from_clip_ast_pretrained(
        tmp_path / "clip", tmp_path / "ast", margin_max=0.05, **TINY_OVERRIDES
    )

    assert model.config.projection_dim == 32 and model.config.margin_max == 0.05
    for name in ("text_model", "vision_model", "text_projection", "visual_projection"):
        assert_same_tensors(getattr(model, name), getattr(clip, name))
    assert_same_tensors(model.audio_model, audio)
    assert model.logit_scale.item() == pytest.approx(3.0)
    text_layers = clip.text_model.encoder.layers
    for layers in (model.audio_resampler.layers, model.fusion.layers):
        for layer, text_layer in zip(layers, text_layers, strict=True):
            for part in ("self_attn", "mlp", "layer_norm1", "layer_norm2"):
                assert_same_tensors(getattr(layer, part), getattr(text_layer, part))
            # New parts keep _init_weights: N(0, 0.02) weights and zero biases.
            assert torch.all(layer.cross_attn.q_proj.bias == 0) and layer.cross_attn.q_proj.weight.std() < 0.03
    text_positions = clip.text_model.embeddings.position_embedding.weight
    assert torch.equal(model.frame_position_embedding.weight, text_positions[:16])


def test_from_clip_ast_pretrained_warns_and_keeps_random_layers_when_widths_differ(tmp_path, caplog):
    clip, _ = save_tiny_clip_and_ast(tmp_path, ASTModel, text_intermediate_size=64)  # 64 != 4 * projection_dim
    with caplog.at_level(logging.WARNING):
        model = AvigateModel.from_clip_ast_pretrained(tmp_path / "clip", tmp_path / "ast", **TINY_OVERRIDES)
    assert "Not initialising audio_resampler.layers" in caplog.text and "Not initialising fusion.layers" in caplog.text
    text_attention = clip.text_model.encoder.layers[0].self_attn
    assert not torch.equal(model.fusion.layers[0].self_attn.q_proj.weight, text_attention.q_proj.weight)
    assert torch.all(model.fusion.layers[0].self_attn.q_proj.bias == 0)
    assert_same_tensors(model.text_model, clip.text_model)  # the towers are still copied


# ---------------------------------------------------------------------------------------------------------------
# 7. Attention backends, gradient checkpointing, initialisation, config validation
# ---------------------------------------------------------------------------------------------------------------


def test_eager_and_sdpa_agree(inputs):
    sdpa, eager = build_model("sdpa"), build_model("eager")
    assert eager.text_model.config._attn_implementation == "eager"
    assert sdpa.text_model.config._attn_implementation == "sdpa"
    eager.load_state_dict(sdpa.state_dict())
    with torch.no_grad():
        expected, outputs = sdpa(**inputs, return_loss=True), eager(**inputs, return_loss=True)
    for name in ("loss", "logits_per_text", "frame_embeds", "attn_gates", "ffn_gates"):
        torch.testing.assert_close(outputs[name], expected[name], rtol=1e-5, atol=1e-5)


def loss_gradients(model: AvigateModel, inputs: dict) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**inputs, return_loss=True).loss.backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients(inputs):
    model = build_model().train()  # every dropout of the tiny config is 0, so train mode is deterministic
    expected = loss_gradients(model, inputs)
    model.activation_checkpointing_enable()
    calls = {"fusion": 0, "resampler": 0}
    # Hooks of a checkpointed layer stay outside the checkpoint; those of its children fire again in the recompute
    # (pre-hooks of an early child: the recompute stops as soon as the last saved tensor is rebuilt).
    for name, layer in (("fusion", model.fusion.layers[0]), ("resampler", model.audio_resampler.layers[0])):
        layer.layer_norm1.register_forward_pre_hook(lambda *args, name=name: calls.update({name: calls[name] + 1}))
    gradients = loss_gradients(model, inputs)
    assert calls == {"fusion": 2, "resampler": 2}, "checkpointed layers run again during backward"
    assert gradients.keys() == expected.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_init_weights_covers_every_parameter(monkeypatch):
    """No parameter may keep torch's default init: poison the defaults with NaN and expect none to survive."""

    def poisoned_reset_parameters(module: nn.Module) -> None:
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                parameter.fill_(float("nan"))

    for module_class in (nn.Linear, nn.Embedding, nn.LayerNorm, nn.Conv2d):
        monkeypatch.setattr(module_class, "reset_parameters", poisoned_reset_parameters)
    first, second = build_model(seed=0), build_model(seed=0)
    for (name, parameter), other in zip(first.named_parameters(), second.parameters(), strict=True):
        assert torch.isfinite(parameter).all(), f"{name} kept torch's default initialisation"
        # Parameters created with torch.empty hold whatever memory they got unless initialised: seeded builds agree.
        assert torch.equal(parameter, other), f"{name} is not initialised deterministically"


def test_new_parameters_follow_the_documented_init(model):
    config = model.config
    assert model.logit_scale.item() == pytest.approx(config.logit_scale_init_value)
    queries = model.audio_resampler.query_tokens
    torch.testing.assert_close(queries @ queries.T, torch.eye(config.num_audio_queries), rtol=0, atol=1e-5)
    new_modules = {
        "audio_resampler": model.audio_resampler, "fusion": model.fusion, "audio_projection": model.audio_projection,
        "frame_position_embedding": model.frame_position_embedding,
    }
    for prefix, module in new_modules.items():
        for name, parameter in module.named_parameters():
            full_name = f"{prefix}.{name}"
            if name == "query_tokens":
                continue
            if "layer_norm" in name:
                expected = 1.0 if name.endswith("weight") else 0.0
                assert torch.all(parameter == expected), full_name
            elif name.endswith("bias"):
                assert torch.all(parameter == 0), full_name
            elif parameter.numel() >= 256:
                assert parameter.mean().abs() < 0.01 and 0.015 < parameter.std() < 0.025, full_name
            else:  # too few values for a sample std (the gate's D/2 → 1 layer): N(0, 0.02) stays within 5σ
                assert parameter.abs().max() < 0.1 and parameter.abs().min() > 0, full_name


@pytest.mark.parametrize(
    "field, value",
    [
        ("fusion_num_attention_heads", 5),
        ("margin_max", -0.1),
        ("margin_scale", -1.0),
        ("num_audio_queries", 0),
        ("fusion_num_layers", 0),
        ("gate_mode", "half"),
        ("fusion_residual_weight", 1.5),
        ("logit_scale_init_value", 10.0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AvigateConfig(**tiny_config_kwargs(**{field: value}))


# ---------------------------------------------------------------------------------------------------------------
# 8. transformers conventions: output kwargs, audio features, half precision, offloading, tower init
# ---------------------------------------------------------------------------------------------------------------


def test_return_dict_false_and_config_return_dict_give_the_same_values_as_a_tuple(inputs):
    model = build_model()
    with torch.no_grad():
        expected = model(**inputs, return_loss=True)
        as_tuple = model(**inputs, return_loss=True, return_dict=False)
        model.config.return_dict = False
        from_config = model(**inputs, return_loss=True)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    for values in (as_tuple, from_config):
        torch.testing.assert_close(values[0], expected.loss)  # loss, logits_per_text, ... in field order
        torch.testing.assert_close(values[1], expected.logits_per_text)
        torch.testing.assert_close(values[4], expected.video_embeds)


def test_hidden_states_and_attentions_of_every_tower_and_fusion_layer(inputs):
    model = build_model(attn_implementation="eager")
    with torch.no_grad():
        plain = model(**inputs)
        outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
    config, video = model.config, outputs.video_model_output
    num_real_frames = int(inputs["video_mask"].sum())
    assert len(outputs.text_model_output.hidden_states) == config.text_config.num_hidden_layers + 1
    assert len(outputs.text_model_output.attentions) == config.text_config.num_hidden_layers
    assert len(video.hidden_states) == config.vision_config.num_hidden_layers + 1
    assert video.hidden_states[0].shape[0] == num_real_frames  # padded frames are never encoded
    assert len(video.audio_model_output.hidden_states) == config.audio_config.num_hidden_layers + 1
    assert len(video.audio_model_output.attentions) == config.audio_config.num_hidden_layers
    assert len(video.fusion_hidden_states) == config.fusion_num_layers + 1
    assert video.fusion_attentions[0].shape == (NUM_VIDEOS, config.fusion_num_attention_heads, NUM_FRAMES, NUM_FRAMES)
    cross = video.fusion_cross_attentions[0]
    assert cross.shape == (NUM_VIDEOS, config.fusion_num_attention_heads, NUM_FRAMES, config.num_audio_queries)
    torch.testing.assert_close(cross.sum(-1), torch.ones(cross.shape[:-1]))
    # Padded frames get no attention from real ones; asking for more outputs changes no result.
    assert video.fusion_attentions[0][1, :, :, 2:].abs().max() == 0
    torch.testing.assert_close(outputs.logits_per_text, plain.logits_per_text)
    assert plain.video_model_output.fusion_hidden_states is None and plain.text_model_output.hidden_states is None


def naive_ast_hidden_states(ast: ASTModel, input_values: torch.Tensor) -> torch.Tensor:
    """AST's layers run by hand: the pre-LayerNorm states the feature caches store."""
    hidden_states = ast.embeddings(input_values)
    for layer in ast.layers:
        hidden_states = layer(hidden_states, None)
    return hidden_states


def test_get_audio_features_follows_the_convention_and_matches_the_cache_path(model, inputs):
    input_values = inputs["input_values"]
    with torch.no_grad():
        outputs = model.get_audio_features(input_values)
        cached = model.get_audio_hidden_states(input_values)
        torch.testing.assert_close(cached, naive_ast_hidden_states(model.audio_model, input_values))
        from_cache = model.get_audio_embeddings_from_hidden_states(cached)
        as_tuple = model.get_audio_features(input_values, return_dict=False)
    assert outputs.last_hidden_state.shape == (NUM_VIDEOS, cached.shape[1], model.config.audio_config.hidden_size)
    assert outputs.pooler_output.shape == (NUM_VIDEOS, model.config.num_audio_queries, model.config.projection_dim)
    assert outputs.hidden_states is None  # only captured internally, as it was not asked for
    torch.testing.assert_close(outputs.pooler_output, from_cache)
    torch.testing.assert_close(as_tuple[1], from_cache)


def write_processor_and_video(folder, tokenizer_dir) -> tuple:
    from media import tone, write_test_video
    from transformers import CLIPTokenizer

    from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor

    size = tiny_config_kwargs()["vision_config"]["image_size"]
    processor = AvigateProcessor(
        AvigateFeatureExtractor(), AvigateVideoProcessor(size=size, crop_size=size, num_frames=4),
        CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=8),
    )
    video = write_test_video(str(folder / "clip.mp4"), num_frames=8, fps=8, size=(48, 40),
                             audio=tone(440.0, 1.0, 16000), sample_rate=16000)
    return processor, video


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_on_processor_output(dtype, model, tiny_tokenizer_dir, tmp_path):
    processor, video = write_processor_and_video(tmp_path, tiny_tokenizer_dir)
    batch = processor(text=["a dog barks", "a car"], videos=[video, video], return_tensors="pt")
    assert batch["input_values"].dtype == batch["pixel_values"].dtype == torch.float32
    model.save_pretrained(tmp_path / "model")
    half = AvigateModel.from_pretrained(tmp_path / "model", dtype=dtype).eval()
    assert half.dtype == dtype
    with torch.no_grad():
        expected = model(**batch, return_loss=True)
        outputs = half(**batch, return_loss=True)
    assert outputs.logits_per_text.dtype == dtype
    # Logits are scaled by σ ≈ 14: half-precision rounding moves them by hundredths, not more.
    torch.testing.assert_close(outputs.logits_per_text.float(), expected.logits_per_text, atol=0.1, rtol=0.02)
    torch.testing.assert_close(outputs.loss.float(), expected.loss, atol=0.05, rtol=0.02)


def test_disk_offloaded_inference_equals_in_memory_inference(model, inputs, tmp_path):
    model.save_pretrained(tmp_path / "model")
    # Every sub-module on disk; the logit scale, a parameter of the root module itself, stays in memory.
    device_map = {**{name: "disk" for name, _ in model.named_children()}, "logit_scale": "cpu"}
    offloaded = AvigateModel.from_pretrained(
        tmp_path / "model", device_map=device_map, offload_folder=str(tmp_path / "offload")
    ).eval()
    assert offloaded.frame_position_embedding.weight.device.type == "meta"  # really offloaded, loaded by hooks
    with torch.no_grad():
        expected = model(**inputs, return_loss=True)
        outputs = offloaded(**inputs, return_loss=True)
    for name in ("loss", "logits_per_text", "frame_embeds", "attn_gates", "visual_embeds"):
        torch.testing.assert_close(getattr(outputs, name), getattr(expected, name), msg=name)


def test_towers_missing_from_a_checkpoint_get_clip_and_ast_init():
    config = AvigateConfig(**tiny_config_kwargs(initializer_range=0.02))
    torch.manual_seed(0)
    model = AvigateModel.from_pretrained(None, config=config, state_dict={})
    text_config = config.text_config
    # CLIP's own rule for attention input projections: width^-0.5 · (2 · layers)^-0.5 (0.088 here), not N(0, 0.02).
    clip_std = text_config.hidden_size**-0.5 * (2 * text_config.num_hidden_layers) ** -0.5
    q_proj = model.text_model.encoder.layers[0].self_attn.q_proj.weight
    assert q_proj.std().item() == pytest.approx(clip_std, rel=0.1)
    assert model.text_model.embeddings.position_ids.tolist()[0] == list(range(text_config.max_position_embeddings))
