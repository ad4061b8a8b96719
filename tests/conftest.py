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
