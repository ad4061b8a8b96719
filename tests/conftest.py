"""Shared fixtures: tiny random configs, a tiny CLIP-format tokenizer, offline hub."""

import os


# Set before anything imports huggingface_hub, which reads these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from modeling_avigate.testing_utils import TEST_WORDS, tiny_config_kwargs, tiny_token_ids  # noqa: E402, F401


@pytest.fixture
def tiny_config():
    from modeling_avigate import AvigateConfig

    return AvigateConfig(**tiny_config_kwargs())


@pytest.fixture
def tiny_tokenizer_dir(tmp_path):
    from modeling_avigate.vocab import write_word_level_clip_vocab

    directory = tmp_path / "tokenizer"
    write_word_level_clip_vocab(TEST_WORDS, str(directory))
    return directory


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small synthetic benchmark (16 / 8 / 8 clips), generated once per test run; tests that change its files work
    on a copy."""
    from modeling_avigate.data.synthetic import generate_synthetic_benchmark

    directory = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_benchmark(str(directory), seed=0, sizes={"train": 16, "validation": 8, "test": 8})
    return directory


def folder_snapshot(folder) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones included) with its bytes, to check that a refused call touched nothing."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}
