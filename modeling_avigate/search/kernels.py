# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Pure scoring kernels of the search: an exact chunked scan and the exact re-rank of a shortlist, both by AVIGATE's
multi-grained score (`AvigateModel.similarity`). The benchmark calls them directly on synthetic vectors."""

import torch

from ..modeling_avigate import multi_grained_similarity


# The scan scores at most this many (query, video, frame) triples per `multi_grained_similarity` call; each chunk's
# frames are cast to float32 once, so memory stays bounded however large the gallery is.
SCORE_CHUNK_ELEMENTS = 1 << 22


def _rankable(scores: torch.Tensor) -> torch.Tensor:
    """Scores with every non-finite one set to -inf: a video whose stored embedding holds NaN or inf scores NaN, and a
    descending sort puts NaN first; a broken row must rank never, not first."""
    return scores.masked_fill(~scores.isfinite(), float("-inf"))


def _merge_top_k(best_scores: torch.Tensor, best_ids: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor,
                 k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # A stable sort keeps the earlier (lower-position) video first among equal scores, so results do not depend on
    # the chunk size.
    scores, ids = torch.cat([best_scores, scores], dim=1), torch.cat([best_ids, ids], dim=1)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


def exact_search(
    text_embeds: torch.Tensor,
    frame_embeds: torch.Tensor,
    video_mask: torch.Tensor,
    video_embeds: torch.Tensor,
    logit_scale: float,
    lse_temperature: float,
    k: int,
    chunk_elements: int = SCORE_CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` videos of every query by the exact multi-grained score, scanning the gallery in chunks: each chunk is
    scored by one `multi_grained_similarity` call and only the running top-`k` is kept.

    Args:
        text_embeds: `[Nq, D]` normalised query embeddings (float32).
        frame_embeds: `[N, T, D]` normalised fused frames (fp16 or fp32).
        video_mask: `[N, T]`, nonzero for real frames.
        video_embeds: `[N, D]` global embeddings, `pool_video_embeds` of the same frames.
        logit_scale, lse_temperature: σ and λ of the model.
        k: results per query (clipped to N).
        chunk_elements: at most this many query × video × frame scores exist at once.

    Returns:
        `(scores [Nq, k], positions [Nq, k])`, best first; a video whose score is not finite (NaN or inf stored
        embeddings) is never ranked: -inf / -1 fill the places it and the shortage of other videos leave.

    Example:

    ```python
    >>> from modeling_avigate.modeling_avigate import pool_video_embeds
    >>> frames = torch.nn.functional.normalize(torch.randn(50, 4, 8), dim=-1)
    >>> mask = torch.ones(50, 4)
    >>> text = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    >>> scores, ids = exact_search(text, frames, mask, pool_video_embeds(frames, mask), 100.0, 1.0, k=3)
    >>> ids.shape
    torch.Size([2, 3])
    ```
    """
    num_queries, (num_videos, num_frames) = text_embeds.shape[0], frame_embeds.shape[:2]
    k = min(k, num_videos)
    chunk = max(1, chunk_elements // max(1, num_queries * num_frames))
    best_scores = text_embeds.new_empty(num_queries, 0)
    best_ids = torch.empty(num_queries, 0, dtype=torch.long, device=text_embeds.device)
    for start in range(0, num_videos, chunk):
        stop = min(start + chunk, num_videos)
        scores = multi_grained_similarity(
            text_embeds, video_embeds[start:stop].float(), frame_embeds[start:stop].float(), video_mask[start:stop],
            logit_scale, lse_temperature, chunk_elements=None,
        )
        ids = torch.arange(start, stop, device=scores.device).expand(num_queries, -1)
        best_scores, best_ids = _merge_top_k(best_scores, best_ids, _rankable(scores), ids, k)
    return best_scores, best_ids.masked_fill(best_scores == float("-inf"), -1)


def rerank_candidates(
    text_embeds: torch.Tensor,
    candidates: torch.Tensor,
    frame_embeds: torch.Tensor,
    video_mask: torch.Tensor,
    video_embeds: torch.Tensor,
    logit_scale: float,
    lse_temperature: float,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact multi-grained re-rank of each query's shortlist `candidates` `[Nq, M]` (positions; -1 = none, as faiss
    pads short lists). Returns `(scores [Nq, k], positions [Nq, k])` with -inf / -1 where fewer than `k` exist; as in
    [`exact_search`], a candidate whose score is not finite is never ranked."""
    num_queries = text_embeds.shape[0]
    k = min(k, candidates.shape[1])
    out_scores = torch.full((num_queries, k), float("-inf"))
    out_ids = torch.full((num_queries, k), -1, dtype=torch.long)
    for query in range(num_queries):
        ids = candidates[query][candidates[query] >= 0]
        if ids.numel() == 0:
            continue
        # Scoring in shortlist order with a stable sort would favour faiss' order on ties; sort ids first so ties
        # resolve by position, as in the exact scan. index_select gathers rows about 4× faster than fancy indexing.
        ids = ids.sort().values
        scores = multi_grained_similarity(
            text_embeds[query : query + 1], video_embeds.index_select(0, ids), frame_embeds.index_select(0, ids),
            video_mask.index_select(0, ids), logit_scale, lse_temperature,
        )[0]
        finite = scores.isfinite()
        ids, scores = ids[finite], scores[finite]
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        out_scores[query, : order.numel()] = scores[order]
        out_ids[query, : order.numel()] = ids[order]
    return out_scores, out_ids


