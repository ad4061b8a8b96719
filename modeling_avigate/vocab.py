"""Write small CLIP-format BPE vocabularies in which every word of a closed word list is one token.

The synthetic benchmark and the tests cannot download `openai/clip-vit-base-patch32`'s tokenizer, so they build
a vocabulary of the same format (byte-level `vocab.json` + `merges.txt`) that `CLIPTokenizer` loads offline.
"""

import json
import os
from collections.abc import Iterable

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode


BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def build_word_level_bpe(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return `(vocab, merges)`: every byte symbol, then left-to-right merges that assemble each word."""
    byte_symbols = sorted(set(bytes_to_unicode().values()))
    vocab: dict[str, int] = {}
    for symbol in byte_symbols + [symbol + "</w>" for symbol in byte_symbols]:
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    seen_merges = set()
    for word in sorted(set(word.lower() for word in words if word)):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            if pair not in seen_merges:
                seen_merges.add(pair)
                merges.append(pair)
            merged = symbols[0] + symbols[1]
            vocab.setdefault(merged, len(vocab))
            symbols = [merged] + symbols[2:]
    for special in (BOS_TOKEN, EOS_TOKEN):
        vocab.setdefault(special, len(vocab))
    return vocab, merges


def write_word_level_clip_vocab(words: Iterable[str], save_directory: str) -> CLIPTokenizer:
    """Write `vocab.json` and `merges.txt` for `words` into `save_directory` and return the loaded tokenizer.

    Example:

    ```python
    >>> import tempfile
    >>> from modeling_avigate.vocab import write_word_level_clip_vocab
    >>> tokenizer = write_word_level_clip_vocab(["a", "dog", "barks"], tempfile.mkdtemp())
    >>> tokenizer.convert_ids_to_tokens(tokenizer("a dog barks")["input_ids"])
    ['<|startoftext|>', 'a</w>', 'dog</w>', 'barks</w>', '<|endoftext|>']
    ```
    """
    vocab, merges = build_word_level_bpe(words)
    os.makedirs(save_directory, exist_ok=True)
    vocab_file = os.path.join(save_directory, "vocab.json")
    merges_file = os.path.join(save_directory, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as handle:
        json.dump(vocab, handle, ensure_ascii=False)
    with open(merges_file, "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))
    return CLIPTokenizer(vocab_file, merges_file)
