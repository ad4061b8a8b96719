"""Conversion of the official AVIGATE checkpoint and of OpenAI CLIP + original AST files (tiny, built in the test)."""

import pytest
import torch
from conftest import tiny_config_kwargs

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.cli import main
from modeling_avigate.hub.convert_avigate_original_checkpoint import (
    build_model_from_official_layout,
    clip_ast_to_official_layout,
    convert_official_state_dict,
    infer_config_kwargs,
    load_original_state_dict,
)


D, WIDTH, INTER, LAYERS, QUERIES, FRAMES = 32, 32, 64, 2, 4, 16
VOCAB = tiny_config_kwargs()["text_config"]["vocab_size"]
CONTEXT, VISION_POSITIONS, AUDIO_POSITIONS = 32, 5, 514  # 32 px / 16 px patches; 8 × 64 AST patches


class _Values:
    """Random tensors whose entries are unique across the whole state dict, so a value identifies its source."""

    def __init__(self):
        self.next = 0

    def __call__(self, *shape: int) -> torch.Tensor:
        count = torch.Size(shape).numel()
        values = torch.arange(self.next, self.next + count, dtype=torch.float32)
        self.next += count
        return values[torch.randperm(count)].reshape(shape)


def _clip_block(sd: dict, prefix: str, width: int, inter: int, t: _Values) -> None:
    sd.update({
        f"{prefix}.attn.in_proj_weight": t(3 * width, width), f"{prefix}.attn.in_proj_bias": t(3 * width),
        f"{prefix}.attn.out_proj.weight": t(width, width), f"{prefix}.attn.out_proj.bias": t(width),
        f"{prefix}.ln_1.weight": t(width), f"{prefix}.ln_1.bias": t(width),
        f"{prefix}.ln_2.weight": t(width), f"{prefix}.ln_2.bias": t(width),
        f"{prefix}.mlp.c_fc.weight": t(inter, width), f"{prefix}.mlp.c_fc.bias": t(inter),
        f"{prefix}.mlp.c_proj.weight": t(width, inter), f"{prefix}.mlp.c_proj.bias": t(width),
    })


def _openai_clip(t: _Values, text_inter: int = INTER) -> dict:
    """An OpenAI CLIP ViT state dict in its own names (with the integer metadata entries of the released files)."""
    sd = {
        "visual.conv1.weight": t(WIDTH, 3, 16, 16), "visual.class_embedding": t(WIDTH),
        "visual.positional_embedding": t(VISION_POSITIONS, WIDTH),
        "visual.ln_pre.weight": t(WIDTH), "visual.ln_pre.bias": t(WIDTH),
        "visual.ln_post.weight": t(WIDTH), "visual.ln_post.bias": t(WIDTH), "visual.proj": t(WIDTH, D),
        "token_embedding.weight": t(VOCAB, WIDTH), "positional_embedding": t(CONTEXT, WIDTH),
        "ln_final.weight": t(WIDTH), "ln_final.bias": t(WIDTH), "text_projection": t(WIDTH, D),
        "logit_scale": t(),
        "input_resolution": torch.tensor(32), "context_length": torch.tensor(CONTEXT),
        "vocab_size": torch.tensor(VOCAB),
    }
    for i in range(LAYERS):
        _clip_block(sd, f"visual.transformer.resblocks.{i}", WIDTH, INTER, t)
        _clip_block(sd, f"transformer.resblocks.{i}", WIDTH, text_inter, t)
    return sd


def _timm_ast(t: _Values) -> dict:
    """The original AST `.pth`: timm DeiT names under `module.v.`, plus its heads and AudioSet classifier."""
    sd = {
        "v.cls_token": t(1, 1, WIDTH), "v.dist_token": t(1, 1, WIDTH), "v.pos_embed": t(1, AUDIO_POSITIONS, WIDTH),
        "v.patch_embed.proj.weight": t(WIDTH, 1, 16, 16), "v.patch_embed.proj.bias": t(WIDTH),
        "v.norm.weight": t(WIDTH), "v.norm.bias": t(WIDTH),
        "v.head.weight": t(10, WIDTH), "v.head.bias": t(10),
        "v.head_dist.weight": t(10, WIDTH), "v.head_dist.bias": t(10),
        "mlp_head.0.weight": t(WIDTH), "mlp_head.0.bias": t(WIDTH), "mlp_head.1.weight": t(527, WIDTH),
        "mlp_head.1.bias": t(527),
    }
    for i in range(LAYERS):
        p = f"v.blocks.{i}"
        sd.update({
            f"{p}.norm1.weight": t(WIDTH), f"{p}.norm1.bias": t(WIDTH),
            f"{p}.attn.qkv.weight": t(3 * WIDTH, WIDTH), f"{p}.attn.qkv.bias": t(3 * WIDTH),
            f"{p}.attn.proj.weight": t(WIDTH, WIDTH), f"{p}.attn.proj.bias": t(WIDTH),
            f"{p}.norm2.weight": t(WIDTH), f"{p}.norm2.bias": t(WIDTH),
            f"{p}.mlp.fc1.weight": t(INTER, WIDTH), f"{p}.mlp.fc1.bias": t(INTER),
            f"{p}.mlp.fc2.weight": t(WIDTH, INTER), f"{p}.mlp.fc2.bias": t(WIDTH),
        })
    return {f"module.{key}": tensor for key, tensor in sd.items()}


def _cross_attention(sd: dict, prefix: str, t: _Values) -> None:
    sd.update({
        f"{prefix}.cross_attn.in_proj_weight": t(3 * D, D), f"{prefix}.cross_attn.in_proj_bias": t(3 * D),
        f"{prefix}.cross_attn.out_proj.weight": t(D, D), f"{prefix}.cross_attn.out_proj.bias": t(D),
        f"{prefix}.ln_3.weight": t(D), f"{prefix}.ln_3.bias": t(D),
    })


def official_state_dict(seed: int = 0) -> dict:
    """A tiny official AVIGATE training checkpoint (CLIP4Clip layout), fp32 so every value stays unique."""
    torch.manual_seed(seed)
    t = _Values()
    sd = {f"clip.{key}": tensor for key, tensor in _openai_clip(t).items() if key not in
          ("input_resolution", "context_length", "vocab_size")}
    sd.update({f"clip.audio.{key[len('module.'):]}": tensor for key, tensor in _timm_ast(t).items()
               if ".head" not in key and "mlp_head" not in key})
    sd.update({
        "clip.audio_projection": t(WIDTH, D), "frame_position_embeddings.weight": t(FRAMES, D),
        "query_tokens": t(D, QUERIES), "query_position_embeddings.weight": t(QUERIES, D),
    })
    for i in range(LAYERS):
        _clip_block(sd, f"transformer_Fusion.resblocks.{i}", D, 4 * D, t)
        _cross_attention(sd, f"transformer_Fusion.resblocks.{i}", t)
        p = f"transformerClip.resblocks.{i}"
        _clip_block(sd, p, D, 4 * D, t)
        _cross_attention(sd, p, t)
        sd.update({
            f"{p}.ln_4.weight": t(D), f"{p}.ln_4.bias": t(D),
            f"{p}.cross_ff.cross_fc.weight": t(4 * D, D), f"{p}.cross_ff.cross_proj.weight": t(D, 4 * D),
            f"{p}.attn_gate.ag_fc.weight": t(D // 2, 2 * D), f"{p}.attn_gate.ag_proj.weight": t(1, D // 2),
            f"{p}.ff_gate.fg_fc.weight": t(D // 2, 2 * D), f"{p}.ff_gate.fg_proj.weight": t(1, D // 2),
        })
    return sd


def q(x):
    return x.float().chunk(3)[0]


def k(x):
    return x.float().chunk(3)[1]


def v(x):
    return x.float().chunk(3)[2]


def same(x):
    return x.float()


def transposed(x):
    return x.float().T


# Where each official tensor must land (layer 1 of every stack), written out by hand.
VISUAL_1, RESAMPLER_1 = "clip.visual.transformer.resblocks.1.", "transformer_Fusion.resblocks.1."
EXPECTED = [
    ("vision_model.embeddings.patch_embedding.weight", "clip.visual.conv1.weight", same),
    ("vision_model.embeddings.class_embedding", "clip.visual.class_embedding", same),
    ("vision_model.embeddings.position_embedding.weight", "clip.visual.positional_embedding", same),
    ("vision_model.pre_layrnorm.bias", "clip.visual.ln_pre.bias", same),
    ("vision_model.encoder.layers.1.self_attn.q_proj.weight", VISUAL_1 + "attn.in_proj_weight", q),
    ("vision_model.encoder.layers.1.self_attn.k_proj.bias", VISUAL_1 + "attn.in_proj_bias", k),
    ("vision_model.encoder.layers.1.self_attn.v_proj.weight", VISUAL_1 + "attn.in_proj_weight", v),
    ("vision_model.encoder.layers.1.self_attn.out_proj.weight", VISUAL_1 + "attn.out_proj.weight", same),
    ("vision_model.encoder.layers.1.layer_norm1.weight", VISUAL_1 + "ln_1.weight", same),
    ("vision_model.encoder.layers.1.mlp.fc2.bias", VISUAL_1 + "mlp.c_proj.bias", same),
    ("vision_model.post_layernorm.weight", "clip.visual.ln_post.weight", same),
    ("visual_projection.weight", "clip.visual.proj", transposed),
    ("text_model.embeddings.token_embedding.weight", "clip.token_embedding.weight", same),
    ("text_model.embeddings.position_embedding.weight", "clip.positional_embedding", same),
    ("text_model.encoder.layers.1.self_attn.v_proj.bias", "clip.transformer.resblocks.1.attn.in_proj_bias", v),
    ("text_model.encoder.layers.1.layer_norm2.bias", "clip.transformer.resblocks.1.ln_2.bias", same),
    ("text_model.encoder.layers.1.mlp.fc1.weight", "clip.transformer.resblocks.1.mlp.c_fc.weight", same),
    ("text_model.final_layer_norm.weight", "clip.ln_final.weight", same),
    ("text_projection.weight", "clip.text_projection", transposed),
    ("logit_scale", "clip.logit_scale", same),
    ("audio_model.embeddings.cls_token", "clip.audio.v.cls_token", same),
    ("audio_model.embeddings.distillation_token", "clip.audio.v.dist_token", same),
    ("audio_model.embeddings.position_embeddings", "clip.audio.v.pos_embed", same),
    ("audio_model.embeddings.patch_embeddings.projection.weight", "clip.audio.v.patch_embed.proj.weight", same),
    ("audio_model.layers.1.attention.q_proj.weight", "clip.audio.v.blocks.1.attn.qkv.weight", q),
    ("audio_model.layers.1.attention.k_proj.weight", "clip.audio.v.blocks.1.attn.qkv.weight", k),
    ("audio_model.layers.1.attention.v_proj.bias", "clip.audio.v.blocks.1.attn.qkv.bias", v),
    ("audio_model.layers.1.attention.o_proj.weight", "clip.audio.v.blocks.1.attn.proj.weight", same),
    ("audio_model.layers.1.layernorm_before.weight", "clip.audio.v.blocks.1.norm1.weight", same),
    ("audio_model.layers.1.layernorm_after.bias", "clip.audio.v.blocks.1.norm2.bias", same),
    ("audio_model.layers.1.mlp.fc1.weight", "clip.audio.v.blocks.1.mlp.fc1.weight", same),
    ("audio_model.layernorm.weight", "clip.audio.v.norm.weight", same),
    ("audio_projection.weight", "clip.audio_projection", transposed),
    ("frame_position_embedding.weight", "frame_position_embeddings.weight", same),
    ("audio_resampler.query_tokens", "query_tokens", transposed),
    ("audio_resampler.query_position_embedding", "query_position_embeddings.weight", same),
    ("audio_resampler.layers.1.self_attn.q_proj.weight", RESAMPLER_1 + "attn.in_proj_weight", q),
    ("audio_resampler.layers.1.cross_attn.k_proj.weight", RESAMPLER_1 + "cross_attn.in_proj_weight", k),
    ("audio_resampler.layers.1.cross_attn.out_proj.bias", RESAMPLER_1 + "cross_attn.out_proj.bias", same),
    ("audio_resampler.layers.1.layer_norm_cross.weight", RESAMPLER_1 + "ln_3.weight", same),
    ("audio_resampler.layers.1.layer_norm1.bias", RESAMPLER_1 + "ln_1.bias", same),
    ("audio_resampler.layers.1.mlp.fc2.weight", RESAMPLER_1 + "mlp.c_proj.weight", same),
    ("fusion.layers.1.attn_gate.fc1.weight", "transformerClip.resblocks.1.attn_gate.ag_fc.weight", same),
    ("fusion.layers.1.attn_gate.fc2.weight", "transformerClip.resblocks.1.attn_gate.ag_proj.weight", same),
    ("fusion.layers.1.ffn_gate.fc1.weight", "transformerClip.resblocks.1.ff_gate.fg_fc.weight", same),
    ("fusion.layers.1.ffn_gate.fc2.weight", "transformerClip.resblocks.1.ff_gate.fg_proj.weight", same),
    ("fusion.layers.1.cross_attn.v_proj.bias", "transformerClip.resblocks.1.cross_attn.in_proj_bias", v),
    ("fusion.layers.1.layer_norm_cross.bias", "transformerClip.resblocks.1.ln_3.bias", same),
    ("fusion.layers.1.layer_norm_ffn.weight", "transformerClip.resblocks.1.ln_4.weight", same),
    ("fusion.layers.1.cross_ffn.fc1.weight", "transformerClip.resblocks.1.cross_ff.cross_fc.weight", same),
    ("fusion.layers.1.cross_ffn.fc2.weight", "transformerClip.resblocks.1.cross_ff.cross_proj.weight", same),
    ("fusion.layers.1.self_attn.k_proj.weight", "transformerClip.resblocks.1.attn.in_proj_weight", k),
    ("fusion.layers.1.layer_norm1.weight", "transformerClip.resblocks.1.ln_1.weight", same),
    ("fusion.layers.1.layer_norm2.bias", "transformerClip.resblocks.1.ln_2.bias", same),
    ("fusion.layers.1.mlp.fc1.bias", "transformerClip.resblocks.1.mlp.c_fc.bias", same),
]


@pytest.fixture(scope="module")
def official():
    return official_state_dict()


@pytest.fixture(scope="module")
def converted_model(official):
    model, report = build_model_from_official_layout(official, AvigateConfig(**tiny_config_kwargs()))
    return model, report


@pytest.mark.parametrize("target, source, transform", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_official_tensor_lands_in_place(converted_model, official, target, source, transform):
    model, _ = converted_model
    torch.testing.assert_close(model.state_dict()[target], transform(official[source]), rtol=0, atol=0)


def test_every_model_tensor_comes_from_the_checkpoint(converted_model, official):
    model, report = converted_model
    assert report.is_complete and not report.unmapped_keys and not report.ignored_keys, report.format()
    # Source values are unique integers, so every model entry must be one of them and no entry may be used twice.
    source_values = torch.cat([tensor.float().flatten() for tensor in official.values()])
    model_values = torch.cat([tensor.flatten() for tensor in model.state_dict().values()])
    assert torch.isin(model_values, source_values).all()
    assert model_values.unique().numel() == model_values.numel() == source_values.numel()


def test_fp16_checkpoint_loads_as_fp32(official):
    # The official code keeps CLIP's linear weights in fp16, so its checkpoints store them that way.
    half = {key: tensor.half() if key.startswith("clip.") else tensor for key, tensor in official.items()}
    model, _ = build_model_from_official_layout(half, AvigateConfig(**tiny_config_kwargs()))
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    torch.testing.assert_close(model.visual_projection.weight, half["clip.visual.proj"].float().T)


def test_key_typo_is_reported_and_refused(official):
    broken = dict(official)
    broken["transformerClip.resblocks.0.ln3.weight"] = broken.pop("transformerClip.resblocks.0.ln_3.weight")
    config = AvigateConfig(**tiny_config_kwargs())
    with pytest.raises(ValueError) as error:
        build_model_from_official_layout(broken, config)
    assert "transformerClip.resblocks.0.ln3.weight" in str(error.value)
    assert "fusion.layers.0.layer_norm_cross.weight" in str(error.value)

    _, report = build_model_from_official_layout(broken, config, allow_partial=True)
    assert report.unmapped_keys == ["transformerClip.resblocks.0.ln3.weight"]
    assert report.missing_keys == ["fusion.layers.0.layer_norm_cross.weight"]


def test_shape_mismatch_is_reported(official):
    config = AvigateConfig(**tiny_config_kwargs(num_audio_queries=3))
    with pytest.raises(ValueError, match=r"audio_resampler.query_tokens: checkpoint \[4, 32\] vs model \[3, 32\]"):
        build_model_from_official_layout(official, config)


def test_config_is_inferred_from_shapes(official):
    kwargs = infer_config_kwargs(official)
    tiny = tiny_config_kwargs()
    for name in ("projection_dim", "num_audio_queries", "resampler_num_layers", "fusion_num_layers", "max_frames"):
        assert kwargs[name] == tiny[name], name
    for tower in ("text_config", "vision_config", "audio_config"):
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers"):
            assert kwargs[tower][name] == tiny[tower][name], (tower, name)
    assert kwargs["vision_config"]["image_size"] == 32 and kwargs["text_config"]["vocab_size"] == VOCAB


def test_clip_and_ast_give_the_paper_initialisation():
    t = _Values()
    # The paper copies CLIP text layers into the D-wide resampler/fusion layers, so the text MLP must be D → 4D.
    clip, ast = _openai_clip(t, text_inter=4 * D), _timm_ast(t)
    state_dict = clip_ast_to_official_layout(clip, ast)
    text_config = {**tiny_config_kwargs()["text_config"], "intermediate_size": 4 * D}
    config = AvigateConfig(**tiny_config_kwargs(text_config=text_config))
    with pytest.raises(ValueError, match="audio_resampler.query_tokens"):
        build_model_from_official_layout(state_dict, config)  # an initial model needs initial_model=True

    model, report = build_model_from_official_layout(state_dict, config, initial_model=True)
    assert report.is_complete, report.format()
    assert "clip.audio.mlp_head.1.weight" in report.ignored_keys and "clip.vocab_size" in report.ignored_keys
    assert "fusion.layers.0.attn_gate.fc1.weight" in report.initialized_keys
    weights = model.state_dict()
    torch.testing.assert_close(weights["audio_model.layers.0.attention.k_proj.weight"],
                               k(ast["module.v.blocks.0.attn.qkv.weight"]))
    # Resampler and fusion self-attention / MLP come from CLIP text layer i; frame positions from text positions.
    for stack in ("audio_resampler", "fusion"):
        torch.testing.assert_close(weights[f"{stack}.layers.1.self_attn.v_proj.weight"],
                                   v(clip["transformer.resblocks.1.attn.in_proj_weight"]))
        torch.testing.assert_close(weights[f"{stack}.layers.0.mlp.fc1.bias"],
                                   clip["transformer.resblocks.0.mlp.c_fc.bias"])
    torch.testing.assert_close(weights["frame_position_embedding.weight"], clip["positional_embedding"][:FRAMES])


def test_cli_writes_a_loadable_folder(tmp_path, official):
    checkpoint = tmp_path / "pytorch_model.bin.4"
    torch.save({f"module.{key}": value for key, value in official.items()}, checkpoint)  # DataParallel prefix
    (tmp_path / "config").mkdir()
    AvigateConfig(**tiny_config_kwargs()).save_pretrained(tmp_path / "config")
    assert main(["convert", "--checkpoint", str(checkpoint), "--config", str(tmp_path / "config"), "--output-dir",
                 str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "modeling_avigate.py").is_file()
    loaded = AvigateModel.from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(loaded.audio_resampler.query_tokens, official["query_tokens"].T)


def test_loader_refuses_pickled_objects_and_reads_torchscript(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"weight": torch.ones(1), "object": _Values()}, unsafe)
    with pytest.raises(ValueError, match="unsafe.pt"):
        load_original_state_dict(unsafe)

    scripted = tmp_path / "ViT-tiny.pt"
    linear = torch.nn.Linear(2, 3)
    torch.jit.save(torch.jit.script(linear), scripted)
    torch.testing.assert_close(load_original_state_dict(scripted)["weight"], linear.weight.detach())


def _convert_error(capsys, *argv) -> str:
    """`avigate convert ARGV`'s error: exit status 1 and one line on stderr, no traceback."""
    assert main(["convert", *map(str, argv)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("avigate convert: error: "), err
    return err


def test_torchscript_that_is_not_avigate_or_clip_is_one_line(tmp_path, capsys):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), tmp_path / "linear.pt")
    error = _convert_error(capsys, "--checkpoint", tmp_path / "linear.pt", "--output-dir", tmp_path / "out")
    assert "the weights have no 'clip.visual.conv1.weight'" in error and "pass an explicit config (--config)" in error
    assert not (tmp_path / "out").exists()


def test_pickled_checkpoint_is_one_line_without_unsafe_advice(tmp_path, capsys):
    torch.save({"weight": torch.ones(1), "object": _Values()}, tmp_path / "unsafe.pt")
    error = _convert_error(capsys, "--checkpoint", tmp_path / "unsafe.pt", "--output-dir", tmp_path / "out")
    assert f"{tmp_path / 'unsafe.pt'} holds pickled objects besides tensors (it names test_convert._Values)" in error
    assert "nothing in it ran" in error and "weights_only" not in error and "False" not in error


def test_renamed_keys_are_all_distinct(official):
    converted, unmapped, _ = convert_official_state_dict(official)
    assert not unmapped
    assert set(converted) == set(AvigateModel(AvigateConfig(**tiny_config_kwargs())).state_dict())


class _Nested(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # MultiheadAttention and BatchNorm pickle typed lists and int buffers in TorchScript archives.
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.BatchNorm1d(4)])
        self.attention = torch.nn.MultiheadAttention(4, 2)
        self.register_buffer("positions", torch.arange(6, dtype=torch.float16).reshape(2, 3))
        self.proj = torch.nn.Parameter(torch.randn(4, 2))
        self.input_resolution = 32  # a plain attribute, as in OpenAI's archives: no tensor

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        x = self.attention(x[:, None], x[:, None], x[:, None], need_weights=False)[0][:, 0]
        return x @ self.proj


class _Tampering(torch.nn.Module):
    """A TorchScript module whose own code rewrites its weights while `torch.jit.load` restores it."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]):
        self.weight = state[0] * 0 + 42
        self.training = state[1]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("compile_with", ["script", "trace"])  # OpenAI's archives are traced
def test_torchscript_tensors_are_read_without_running_the_archive(tmp_path, compile_with):
    torch.manual_seed(0)
    module = _Nested().eval()
    compiled = torch.jit.script(module) if compile_with == "script" else torch.jit.trace(module, torch.randn(5, 3))
    torch.jit.save(compiled, tmp_path / "nested.pt")
    tensors = load_original_state_dict(tmp_path / "nested.pt")
    reference = torch.jit.load(tmp_path / "nested.pt").state_dict()  # our own file: trusted reference
    assert sorted(tensors) == sorted(reference)
    for name, tensor in reference.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor), name


def test_torchscript_setstate_code_is_refused_not_run(tmp_path):
    torch.jit.save(torch.jit.script(_Tampering()), tmp_path / "tampering.pt")
    # torch.jit.load runs the archive's code: the weights it returns are not the stored ones.
    assert torch.jit.load(tmp_path / "tampering.pt").weight.tolist() == [42.0, 42.0]
    with pytest.raises(ValueError, match=r"tampering.pt: the archive's code restores a module with its own "
                                         r"__setstate__.*tool you trust"):
        load_original_state_dict(tmp_path / "tampering.pt")


def test_torchscript_archive_whose_code_writes_a_file_writes_nothing(tmp_path):
    import pickle
    import zipfile

    from modeling_avigate.hub.convert_avigate_original_checkpoint import convert_avigate_original_checkpoint

    written = tmp_path / "written-by-the-archive"

    class WritesAFile:
        def __reduce__(self):
            return open, (str(written), "w")

    payload = pickle.dumps(WritesAFile(), protocol=2)
    pickle.loads(payload).close()  # the payload is live: plain unpickling creates the file
    assert written.exists()
    written.unlink()
    # An OpenAI-style archive (a real TorchScript file) whose data.pkl is the payload.
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), tmp_path / "genuine.pt")
    with zipfile.ZipFile(tmp_path / "genuine.pt") as genuine, zipfile.ZipFile(tmp_path / "crafted.pt", "w") as crafted:
        for item in genuine.infolist():
            crafted.writestr(item, payload if item.filename.endswith("/data.pkl") else genuine.read(item))
    with pytest.raises(ValueError, match=r"crafted.pt: refusing to read the TorchScript archive \(data.pkl names "
                                         r"(io|builtins).open"):
        convert_avigate_original_checkpoint(tmp_path / "out", clip_checkpoint_path=tmp_path / "crafted.pt",
                                            ast_checkpoint_path=tmp_path / "crafted.pt")
    assert not written.exists() and not (tmp_path / "out").exists()



PEAK_MEMORY_SCRIPT = """
import resource, sys
from modeling_avigate.hub.convert_avigate_original_checkpoint import load_original_state_dict
for path in sys.argv[1:]:
    try:
        load_original_state_dict(path)
        message = "read"
    except ValueError as error:
        message = str(error).splitlines()[0]
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, message)  # peak so far, KiB on Linux
"""


def test_zip_bombs_in_a_torchscript_archive_are_refused_in_bounded_memory(tmp_path):
    """Archives of a few hundred KiB with an entry of 256 MiB of zeros: a code entry (scanned for `__setstate__`) or a
    tensor's storage (whose size the pickle states) must not be inflated into memory. One fresh process reads the
    genuine archive, then each bomb, and reports its peak resident memory after each."""
    import os
    import subprocess
    import sys
    import zipfile

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), tmp_path / "genuine.pt")
    bombs = []
    for entry in ("code/__torch__/bomb.py", "data/0"):
        bombs.append(tmp_path / f"bomb-{len(bombs)}.pt")
        with zipfile.ZipFile(tmp_path / "genuine.pt") as genuine, \
                zipfile.ZipFile(bombs[-1], "w", zipfile.ZIP_DEFLATED) as bomb:
            prefix = genuine.namelist()[0].split("/")[0]
            for item in genuine.infolist():
                if item.filename != f"{prefix}/{entry}":
                    bomb.writestr(item, genuine.read(item))
            with bomb.open(f"{prefix}/{entry}", "w", force_zip64=True) as inflated:
                for _ in range(256):
                    inflated.write(bytes(1 << 20))
        assert bombs[-1].stat().st_size < 1 << 20
    argv = [sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(tmp_path / "genuine.pt"), *map(str, bombs)]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    (genuine_peak, genuine), *refusals = [line.split(" ", 1) for line in completed.stdout.strip().splitlines()]
    assert genuine == "read"
    for bomb, (peak, message) in zip(bombs, refusals):
        assert message.startswith(f"{bomb}: ") and (int(peak) - int(genuine_peak)) << 10 < 32 << 20, (peak, message)
