"""Every command of the README runs as written on a fresh checkout, offline.

Which test covers which README command:

| README command | test |
|---|---|
| `make demo` | `test_demo.py` (the same script with `--quick`) |
| `make test` | CI (`.ci/run` runs it) |
| `.venv/bin/pip install torch==2.13.0`, `.venv/bin/pip install -e ".[all]"` | `test_packaging.py` |
| Quickstart: `from_pretrained` on the demo's folders | `test_quickstart_runs_offline_on_local_folders`; its caption is its clip's: `test_quickstart_caption_describes_its_clip` |
| Quickstart: `from_clip_ast_pretrained` on Hub ids | marked as needing the network; its offline variant below |
| Quickstart: `from_clip_ast_pretrained` on local folders | `test_quickstart_runs_offline_on_local_folders` |
| `.venv/bin/python -m modeling_avigate.data outputs/synthetic_data` and the synthetic training commands | `test_synthetic_training_commands_run_in_order` |
| Search page: `.venv/bin/pip install -e '.[serve]'` (the `serve` extra holds Gradio), `avigate index` on the demo's clips, then `avigate serve` | `test_search_page_commands_index_and_serve_the_demo` (on a free port) |
| `.venv/bin/accelerate launch ... msrvtt.yaml --data_dir data/msrvtt` | `test_real_benchmark_command_points_at_its_data_layout` (needs the real data and the Hub's CLIP) |
"""

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request

import pytest

from builders import REPO, run_script
from conftest import tiny_config_kwargs


README = os.path.join(REPO, "README.md")
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def code_blocks(language: str) -> list[str]:
    with open(README, encoding="utf-8") as handle:
        return re.findall(rf"```{language}\n(.*?)```", handle.read(), flags=re.S)


def commands(block: str) -> list[str]:
    """The command lines of a bash block, without their trailing comments."""
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def section(title: str) -> str:
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def save_demo_like_folders(root) -> None:
    """What the Quickstart reads after `make demo`: a saved model + processor and a synthetic test clip, plus local
    CLIP and AST folders for the offline paper initialisation (tiny random weights, no download)."""
    from transformers import ASTConfig, ASTModel, CLIPConfig, CLIPModel

    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.data import generate_synthetic_benchmark
    from modeling_avigate.training import processor_from_settings

    processor = processor_from_settings(tokenizer="synthetic", image_size=32, num_frames=4, max_length=16)
    tokenizer = processor.tokenizer
    kwargs = tiny_config_kwargs()
    kwargs["text_config"].update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model_dir = root / "outputs" / "demo" / "avigate-synthetic"
    AvigateModel(AvigateConfig(**kwargs)).save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    generate_synthetic_benchmark(str(root / "outputs" / "demo" / "data"), sizes={"test": 6}, num_proc=1)
    clip_config = CLIPConfig(text_config=kwargs["text_config"], vision_config=kwargs["vision_config"],
                             projection_dim=32)
    CLIPModel(clip_config).save_pretrained(root / "checkpoints" / "clip")
    ASTModel(ASTConfig(**kwargs["audio_config"])).save_pretrained(root / "checkpoints" / "ast")


@pytest.fixture(scope="module")
def demo_like_root(tmp_path_factory):
    """One folder with what `make demo` leaves, for the commands that read it (they only add files of their own)."""
    root = tmp_path_factory.mktemp("clone")
    save_demo_like_folders(root)
    return root


def test_quickstart_runs_offline_on_local_folders(demo_like_root):
    blocks = [block for block in code_blocks("python") if block in section("Quickstart")]
    local, network, offline = blocks
    assert "openai/clip-vit-base-patch32" in network and "needs the network" in section("Quickstart")
    assert "checkpoints/clip" in offline
    script = demo_like_root / "quickstart.py"
    script.write_text(local + "\n" + offline + "\nprint('initialised', type(model).__name__)\n")
    result = subprocess.run([sys.executable, str(script)], cwd=demo_like_root, capture_output=True, text=True,
                            env=OFFLINE, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensor(" in result.stdout and "initialised AvigateModel" in result.stdout


def test_quickstart_caption_describes_its_clip():
    """The Quickstart pairs a caption with a clip of `make demo`'s test split: that clip's own caption."""
    from modeling_avigate.data.synthetic import PRESETS, plan_split

    (local,) = [block for block in code_blocks("python") if "outputs/demo/data/videos" in block]
    caption = re.search(r'text=\["([^"]+)"\]', local).group(1)
    video_id = re.search(r"videos/(test_\d+)\.mp4", local).group(1)
    clips = {clip.video_id: clip for clip in plan_split("test", PRESETS["default"]["test"])}
    assert clips[video_id].caption == caption


def test_docs_give_the_synthetic_tokenizers_size():
    from modeling_avigate.data.synthetic import synthetic_tokenizer

    with open(os.path.join(REPO, "docs", "datasets.md"), encoding="utf-8") as handle:
        stated = re.search(r"CLIPTokenizer, (\d+) tokens", handle.read()).group(1)
    assert int(stated) == len(synthetic_tokenizer())


def test_the_network_line_fails_offline_with_the_hub_named(tmp_path):
    """The README marks it as needing the network: offline it must fail, not hang or succeed from nowhere."""
    network = [block for block in code_blocks("python") if "openai/clip-vit-base-patch32" in block][0]
    script = tmp_path / "network.py"
    script.write_text(network)
    result = run_script(str(script), [])
    assert result.returncode != 0 and "openai/clip-vit-base-patch32" in result.output


@pytest.mark.slow
def test_synthetic_training_commands_run_in_order(tmp_path):
    """The README's synthetic block from a fresh folder: generate the data, pretrain stage 1, then both training
    commands. Sizes are cut so the test stays short (the quick set, 64 pretraining clips: one batch per stage-1 epoch,
    one epoch of each training run); every other setting is the README's."""
    (synthetic,) = [block for block in code_blocks("bash") if "synthetic.yaml" in block and "modeling_avigate.data"
                    in block]
    lines = commands(synthetic)
    assert lines[0] == ".venv/bin/python -m modeling_avigate.data outputs/synthetic_data"
    # the README's programs from this environment; `accelerate launch` with its defaults written out (no config file)
    programs = {(".venv/bin/python",): [sys.executable],
                (".venv/bin/accelerate", "launch"): [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                                           "no"]}
    for line in lines:
        argv = shlex.split(line)
        program = next(key for key in programs if tuple(argv[: len(key)]) == key)
        argv = programs[program] + argv[len(program):]
        argv = [os.path.join(REPO, part) if part.startswith("examples/") else part for part in argv]
        if "train.py" in line:
            argv += ["--epochs", "1", "--report_to", "null"]
        elif "modeling_avigate.data" in line:
            argv += ["--preset", "quick"]
        elif "modeling_avigate.pretraining" in line:
            argv += ["--clips", "64"]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=OFFLINE, timeout=1200)
        assert result.returncode == 0, line + "\n" + result.stderr[-3000:]
    assert (tmp_path / "outputs" / "avigate-synthetic" / "best" / "README.md").is_file()


@pytest.mark.slow
def test_search_page_commands_index_and_serve_the_demo(demo_like_root):
    """The README's search page block on demo-like folders: the index command as written, then the page on a free
    port (the README's default 7860 may be taken) until it answers."""
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from browser import free_port

    from importlib.metadata import requires

    (block,) = [block for block in code_blocks("bash") if block in section("Search page")]
    install_line, *page_lines = commands(block.replace("\\\n", " "))
    # The install line as a clone needs it (make demo installs no Gradio); the extra it names holds Gradio.
    assert install_line == ".venv/bin/pip install -e '.[serve]'"
    assert any(requirement.startswith("gradio") and 'extra == "serve"' in requirement
               for requirement in requires("modeling-avigate"))
    index_line, serve_line = [part.strip() for part in " ".join(page_lines).split("&&")]
    avigate = [sys.executable, "-m", "modeling_avigate.cli"]
    argv = shlex.split(index_line)
    assert argv[0] == ".venv/bin/avigate"
    result = subprocess.run(avigate + argv[1:], cwd=demo_like_root, capture_output=True, text=True, env=OFFLINE,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("indexed 6 videos (6 segments) into outputs/demo/index")
    port = free_port()
    server = subprocess.Popen(avigate + shlex.split(serve_line)[1:] + ["--port", str(port)], cwd=demo_like_root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=OFFLINE)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "avigate serve did not answer within 300 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.communicate(timeout=60)


def test_real_benchmark_command_points_at_its_data_layout():
    """MSR-VTT cannot be downloaded here (and its recipe starts from the Hub's CLIP): the README must say where its
    data comes from, and that page must describe the folder the command reads."""
    (line,) = [line for block in code_blocks("bash") for line in commands(block) if "msrvtt.yaml" in line]
    assert shlex.split(line)[-2:] == ["--data_dir", "data/msrvtt"]
    assert "[docs/datasets.md](docs/datasets.md)" in section("Train and evaluate")
    with open(os.path.join(REPO, "docs", "datasets.md"), encoding="utf-8") as handle:
        assert "data/msrvtt/\n├── MSRVTT_data.json" in handle.read()
