"""Tiny random configurations shared by the test suite and the benchmarks (CPU-sized, no downloads)."""

from .vocab import BOS_TOKEN, EOS_TOKEN, build_word_level_bpe


TEST_WORDS = (
    "a an the dog cat car barks meows drives beeps hums plays at on in with red green blue yellow circle square "
    "triangle moving left right up down high low beep hum chirp clicks sound music man woman talks sings"
).split()


def tiny_token_ids() -> dict:
    """Vocabulary size and special token ids of the `tiny_tokenizer_dir` tokenizer, for the text config."""
    vocab, _ = build_word_level_bpe(TEST_WORDS)
    return dict(vocab_size=len(vocab), bos_token_id=vocab[BOS_TOKEN], eos_token_id=vocab[EOS_TOKEN],
                pad_token_id=vocab[EOS_TOKEN])


def tiny_config_kwargs(**overrides) -> dict:
    """Keyword arguments of an `AvigateConfig` small enough for CPU tests (32-pixel frames, D = 32), whose text
    tower matches the `tiny_tokenizer_dir` tokenizer."""
    kwargs = dict(
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=32, projection_dim=32, **tiny_token_ids(),
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=16, projection_dim=32,
        ),
        audio_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=16,
            frequency_stride=16, time_stride=16, max_length=1024, num_mel_bins=128,
        ),
        projection_dim=32,
        num_audio_queries=4,
        resampler_num_layers=2,
        fusion_num_layers=2,
        fusion_num_attention_heads=4,
        max_frames=16,
    )
    kwargs.update(overrides)
    return kwargs
