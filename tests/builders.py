"""What several test folders build the same way: the repository's paths and scripts, the tiny processor and model on the test
tokenizer, generated clips, an index over them, and a run of `examples/train.py` on the synthetic recipe.

Tests import it as `builders` (pytest.ini puts `tests/` on `sys.path`).
"""

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from modeling_avigate import AvigateConfig, AvigateModel, forked_scripts
from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.search import VideoIndex
from modeling_avigate.testing_utils import TEST_WORDS, tiny_config_kwargs

from media import tone, write_test_video


REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "examples" / "train.py")
FROM_SCRATCH_CONFIG = str(REPO / "examples" / "configs" / "synthetic-from-scratch.yaml")
# Scripts run forked from a server that imported the training stack once: a fresh interpreter per run would spend ~6
# CPU-seconds importing torch, transformers and accelerate, and the suite runs the training script two dozen times.
forked_scripts.configure_server(("accelerate", "modeling_avigate.data", "modeling_avigate.embedding",
                                 "modeling_avigate.evaluation", "modeling_avigate.pipeline", "modeling_avigate.training"),
                                {"OMP_NUM_THREADS": "1"})


def load_script(relative_path: str):
    """The repository's script at `relative_path` (e.g. "examples/demo.py") as a module, loaded by path: putting its
    folder on `sys.path` would let the folder's modules shadow installed packages for every later test."""
    name = "_".join(Path(relative_path).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_processor(tokenizer_dir, num_frames: int = 4):
    from transformers import CLIPTokenizer

    from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=32)
    video_processor = AvigateVideoProcessor(size=32, crop_size=32, num_frames=num_frames)
    return AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)


def tiny_model(processor, seed: int = 0, **overrides) -> AvigateModel:
    tokenizer = processor.tokenizer
    kwargs = tiny_config_kwargs(**overrides)
    # The word-level test vocabulary puts BOS/EOS after the words: size the text tower to it.
    kwargs["text_config"].update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return AvigateModel(AvigateConfig(**kwargs)).eval()


def write_clips(folder, count: int) -> list[str]:
    """`count` short clips with varied motion and sound (one silent), named clip-XX.mp4."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for number in range(count):
        audio = None if number % 3 == 2 else tone(220.0 * (1 + number), 1.0, 16000)
        path = os.path.join(folder, f"clip-{number:02d}.mp4")
        write_test_video(path, num_frames=6 + number, fps=8, size=(40 + 4 * number, 32), audio=audio)
        paths.append(path)
    return paths


def tiny_processor_and_model(root) -> tuple:
    """The word-level test tokenizer written under `root`, the tiny processor on it and a tiny model sized to it."""
    from modeling_avigate.vocab import write_word_level_clip_vocab

    write_word_level_clip_vocab(TEST_WORDS, str(root / "tokenizer"))
    processor = tiny_processor(str(root / "tokenizer"))
    return processor, tiny_model(processor)


def build_gallery(root, count: int) -> dict:
    """The tiny processor and model under `root`, `count` clips in `root/videos` and the index built over them."""
    processor, model = tiny_processor_and_model(root)
    paths = write_clips(str(root / "videos"), count)
    index = VideoIndex.build(model, processor, str(root / "videos"), EmbeddingOptions(batch_size=4, progress=False))
    return {"root": root, "processor": processor, "model": model, "paths": paths, "index": index}


@dataclass
class ScriptRun:
    returncode: int  # negative: killed by that signal
    output: str  # stdout and stderr as the script wrote them


def run_script(path: str, arguments: list[str]) -> ScriptRun:
    """The script at `path` run as `__main__` with `arguments`, in its own process (forked from the preloaded
    server)."""
    lines = []
    returncode = forked_scripts.run_script(path, arguments, lines.append)
    return ScriptRun(returncode, "".join(lines))


def run_train(synthetic_dir, output_dir, *overrides, check=True) -> ScriptRun:
    caches = os.path.join(os.path.dirname(output_dir), "caches")
    arguments = [
        "--config", FROM_SCRATCH_CONFIG, "--data_dir", str(synthetic_dir), "--output_dir", str(output_dir),
        "--audio_cache", os.path.join(caches, "audio"), "--frame_cache", os.path.join(caches, "frames"),
        "--batch_size", "8", "--epochs", "2", "--eval_every_epochs", "1", "--report_to", "null",
        "--eval_batch_size", "16", *overrides,
    ]
    result = run_script(TRAIN, arguments)
    if check:
        assert result.returncode == 0, result.output[-4000:]
    return result
