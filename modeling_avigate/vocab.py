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


def apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Merge `symbols` as CLIP's tokenizer does: repeatedly join the adjacent pair whose merge is listed earliest."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), index) for index, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, index = min(pairs)
        if rank == len(ranks):
            break
        symbols = symbols[:index] + [symbols[index] + symbols[index + 1]] + symbols[index + 2 :]
    return symbols


def build_word_level_bpe(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return `(vocab, merges)`: every byte symbol, then merges under which each word becomes a single token.

    CLIP's tokenizer applies the earliest-listed merge first, so each word is first split with the merges listed so
    far and the merges that join its remaining pieces are appended after them.
    """
    byte_symbols = sorted(set(bytes_to_unicode().values()))
    vocab: dict[str, int] = {}
    for symbol in byte_symbols + [symbol + "</w>" for symbol in byte_symbols]:
        vocab.setdefault(symbol, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(word.lower() for word in words if word)):
        while len(pieces := apply_bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
    for special in (BOS_TOKEN, EOS_TOKEN):
        vocab.setdefault(special, len(vocab))
    return vocab, list(ranks)


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
