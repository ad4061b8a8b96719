# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""What the search page computes, without any web framework: ranked, explained results for a text query or for
"more like this" (a video's global embedding as the query), one page at a time, with a message instead of an
exception for every situation a user can cause (empty index, no known words, a moved file).

Example (random embeddings, no model: query with an embedding):

```python
>>> import torch
>>> from modeling_avigate.search import VideoIndex
>>> frames = torch.nn.functional.normalize(torch.randn(5, 4, 8), dim=-1)
>>> page = SearchPage(VideoIndex.from_embeddings([f"v{i}.mp4" for i in range(5)], frames), page_size=2)
>>> result = page.more_like_this(3)
>>> [hit.rank for hit in result.hits], result.has_next, 3 in [hit.position for hit in result.hits]
([1, 2], True, False)
```
"""

import math
import os
import string
import time
from dataclasses import dataclass, field

import torch

from ..modeling_avigate import multi_grained_similarity
from ..search import VideoIndex


PAGE_SIZE = 12
# Stripped from a word before it is looked up (a query is typed, not tokenised).
PUNCTUATION = string.punctuation + "“”‘’«»…"


@dataclass
class Hit:
    """One result as the page shows it: a segment of a file (`start`, `end` in seconds; `None` for an index built
    from raw embeddings), its score and parts, the best-matching frame's time in the file, and its audio gates."""

    rank: int
    position: int
    file_name: str
    start: float | None
    end: float | None
    score: float
    global_score: float
    local_score: float
    best_frame_time: float | None
    duration: float | None
    has_audio: bool
    audio_gate: float | None
    audio_gate_per_layer: list[float]
    missing: bool
    has_poster: bool


@dataclass
class ResultPage:
    """One page of results, or a message saying why there are none."""

    hits: list[Hit] = field(default_factory=list)
    message: str = ""
    title: str = ""  # what the results are: `Results for “…”` or `Clips like …`
    unknown_words: list[str] = field(default_factory=list)  # query words the model's vocabulary does not hold
    page: int = 0
    has_next: bool = False
    server_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def explain_scores(query: torch.Tensor, video_embeds: torch.Tensor, frame_embeds: torch.Tensor,
                   video_mask: torch.Tensor, logit_scale: float, lse_temperature: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two parts of AVIGATE's score `s = (s_g + s_l) / 2` of one query `[D]` against `K` videos, and the frame
    that matched best, as `multi_grained_similarity` computes them.

    Returns:
        `(s_g [K], s_l [K], best_frame [K])`: `s_g = σ⟨q, v̂⟩`, `s_l = (1/λ) logsumexp_i(λσ⟨q, f̂_i⟩)` over real
        frames, and the index of the real frame with the highest `⟨q, f̂_i⟩`.

    Example:

    ```python
    >>> frames = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    >>> s_g, s_l, best = explain_scores(frames[0, 1], frames.mean(1), frames, torch.ones(2, 3), 10.0, 1.0)
    >>> int(best[0])
    1
    ```
    """
    parts = multi_grained_similarity(query.float()[None], video_embeds.float(), frame_embeds.float(), video_mask,
                                     logit_scale, lse_temperature, return_parts=True)
    return parts.global_scores[0], parts.local_scores[0], parts.best_frames[0]


def query_words(text: str) -> list[str]:
    """The words of a typed query: whitespace-separated, those made of punctuation only left out."""
    return [word for word in text.split() if word.strip(PUNCTUATION)]


def known_words(tokenizer, text: str) -> list[str]:
    """The words of `text` the tokenizer knows. A byte-level BPE encodes any string, spelling a word it has never
    seen out in pieces of one or two characters, so a word counts as known when it is one token or when its pieces
    are 3 characters long on average (`snowboarding` → `snow`, `boarding`: known; `dog` → `do`, `g` in a vocabulary
    without `dog`: not). Punctuation around a word is not part of it."""
    known = []
    for word in query_words(text):
        pieces = [piece.replace("</w>", "") for piece in tokenizer.tokenize(word.strip(PUNCTUATION))]
        if len(pieces) == 1 or sum(map(len, pieces)) >= 3 * len(pieces):
            known.append(word)
    return known


def relocate_videos(index: VideoIndex, folder: str | os.PathLike) -> None:
    """Point the index at a copy of its videos under `folder` (e.g. a Space's download of them): each video keeps its
    path relative to the deepest folder that holds every indexed video, so no path can leave `folder`.

    Example:

    ```python
    >>> import torch
    >>> index = VideoIndex.from_embeddings(["/data/cats/a.mp4", "/data/dogs/b.mp4"], torch.ones(2, 1, 4))
    >>> relocate_videos(index, "/srv/videos")
    >>> index.paths
    ['/srv/videos/cats/a.mp4', '/srv/videos/dogs/b.mp4']
    ```
    """
    if len(index) == 0:
        return
    folder = os.path.abspath(os.fspath(folder))
    paths = [os.path.normpath(path) for path in index.paths]
    root = os.path.dirname(paths[0]) if len(paths) == 1 else os.path.commonpath(paths)
    index.entries = [{**entry, "path": os.path.join(folder, os.path.relpath(path, root))}
                     for entry, path in zip(index.entries, paths)]


class SearchPage:
    """Text → video search and "more like this" over a [`VideoIndex`], a page of explained results at a time.

    Args:
        index: the index; text queries need its model and processor attached.
        page_size: results per page.
    """

    def __init__(self, index: VideoIndex, page_size: int = PAGE_SIZE):
        self.index = index
        self.page_size = page_size

    # -- queries ------------------------------------------------------------------------------------------------------

    def query(self, text: str, page: int = 0) -> ResultPage:
        """Results `page` (from 0) for a caption; a message for an empty index, an empty query or one with no word
        the model's vocabulary knows."""
        started = time.perf_counter()
        text = (text or "").strip()
        if len(self.index) == 0:
            return ResultPage(message="The index is empty: add videos with 'avigate index' and reload.")
        if not text:
            return ResultPage(message="Type what you are looking for, e.g. 'a dog barks at a car'.")
        tokenizer = self.index.processor.tokenizer if self.index.processor is not None else None
        known = query_words(text) if tokenizer is None else known_words(tokenizer, text)
        if not known:
            return ResultPage(message=f"None of the words in “{text}” are in the model's vocabulary; try other "
                                      "words.")
        query = self.index.encode_text([text])[0]
        encoded = time.perf_counter()
        result = self._rank(query, page, exclude=None)
        result.title = f"Results for “{text}”"
        result.unknown_words = list(dict.fromkeys(word for word in query_words(text) if word not in known))
        result.timings = {"text encoding": 1000 * (encoded - started), **result.timings}
        result.server_ms = 1000 * (time.perf_counter() - started)
        return result

    def more_like_this(self, position: int, page: int = 0) -> ResultPage:
        """Results `page` for the video at `position`, its global embedding as the query (the video itself is left
        out)."""
        started = time.perf_counter()
        if not 0 <= position < len(self.index):
            return ResultPage(message=f"There is no video number {position} in the index.")
        result = self._rank(self.index.video_embeds[position], page, exclude=position)
        entry = self.index.entries[position]
        span = f" {entry['start']:.1f}–{entry['end']:.1f} s" if entry.get("end") is not None else ""
        result.title = f"Clips like {os.path.basename(entry['path'])}{span}"
        result.server_ms = 1000 * (time.perf_counter() - started)
        return result

    def _rank(self, query: torch.Tensor, page: int, exclude: int | None) -> ResultPage:
        started = time.perf_counter()
        wanted = (page + 1) * self.page_size + 1 + (exclude is not None)  # one more tells whether a next page exists
        scores, positions = self.index.search_embeddings(query[None], k=min(wanted, len(self.index)))
        ranked = [(score, position) for score, position in zip(scores[0].tolist(), positions[0].tolist())
                  if position >= 0 and position != exclude]
        searched = time.perf_counter()
        start = page * self.page_size
        shown = ranked[start : start + self.page_size]
        hits = self._explain(query, shown, first_rank=start + 1)
        message = "" if hits else "No results on this page."
        return ResultPage(hits, message, page, has_next=len(ranked) > start + self.page_size,
                          timings={"search": 1000 * (searched - started)})

    # -- results ------------------------------------------------------------------------------------------------------

    def _explain(self, query: torch.Tensor, ranked: list[tuple[float, int]], first_rank: int) -> list[Hit]:
        if not ranked:
            return []
        index = self.index
        positions = torch.tensor([position for _, position in ranked])
        logit_scale, lse_temperature = index._scales()
        global_scores, local_scores, best_frames = explain_scores(
            query, index.video_embeds[positions], index.frame_embeds[positions], index.video_mask[positions],
            logit_scale, lse_temperature)
        return [self._hit(first_rank + row, position, score, float(global_scores[row]), float(local_scores[row]),
                          int(best_frames[row]))
                for row, (score, position) in enumerate(ranked)]

    def _hit(self, rank: int, position: int, score: float, global_score: float, local_score: float,
             best_frame: int) -> Hit:
        entry, previews = self.index.entries[position], self.index.previews
        frame_time = float(previews.frame_times[position, best_frame])
        gates = [float(gate) for gate in previews.attn_gates[position] if not math.isnan(gate)]
        has_audio = bool(self.index.has_audio[position])
        return Hit(
            rank=rank, position=position, file_name=os.path.basename(entry["path"]), start=entry.get("start"),
            end=entry.get("end"), score=score,
            global_score=global_score, local_score=local_score,
            best_frame_time=None if math.isnan(frame_time) else frame_time, duration=entry.get("duration"),
            has_audio=has_audio,
            # Layers learn gates of either sign, so the page shows how far the gates open: the mean |g| over layers.
            audio_gate=sum(abs(gate) for gate in gates) / len(gates) if gates and has_audio else None,
            audio_gate_per_layer=gates, missing=not os.path.isfile(entry["path"]),
            has_poster=bool(previews.poster(position)),
        )

    # -- files ------------------------------------------------------------------------------------------------

    def video_file(self, position: int) -> str:
        """The file of the video at `position`; the only way the page reaches a file, so nothing outside the index
        can be served, and of the index only video files (by the name listed and by the name of the file a link
        leads to: an index edited to list `/etc/passwd` or `notes.mp4 → ~/.ssh/id_rsa` serves nothing).

        Raises:
            LookupError: no such video in the index.
            FileNotFoundError: the file was moved, deleted or changed since it was indexed
                ([`VideoIndex.video_file`] checks it).
        """
        return self.index.video_file(position)
