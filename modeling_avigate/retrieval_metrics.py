# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Text-video retrieval metrics: R@1, R@5, R@10, median rank (MdR) and mean rank (MnR), both directions.

Pure functions over a score matrix (numpy or torch), shared by the `evaluate` metric module
(`modeling_avigate/metrics/retrieval`), `evaluate_retrieval` and the `avigate eval` command.

Protocols:

- **one-to-one** (MSR-VTT 1k-A, Charades): caption `i` describes video `i`; the diagonal is the ground truth.
- **multi-caption** (VATEX): `text_to_video[i]` names the video of caption `i`. Text→video ranks every caption
  against all videos. Video→text follows CLIP4Clip (`tensor_video_to_text_sim`): each video's captions are collapsed
  to their best score, giving a `[videos, videos]` matrix whose diagonal is the ground truth, so a video counts its
  best-ranked caption and competes against the best caption of every other video.

Ties are broken *pessimistically* by default: every other candidate scoring the same as the ground truth is ranked
ahead of it, so a constant score matrix gives the worst possible ranks instead of a flattering R@1. `ties="optimistic"`
and `ties="mean"` (average rank of the tied block) are available for comparison with code that breaks ties otherwise.

Example:

```python
>>> import numpy as np
>>> from modeling_avigate.retrieval_metrics import retrieval_metrics
>>> scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.1, 0.2, 0.3]])
>>> retrieval_metrics(scores)  # ranks of the diagonal: 1, 2, 1
{'R@1': 66.66666666666666, 'R@5': 100.0, 'R@10': 100.0, 'MdR': 1.0, 'MnR': 1.3333333333333333}
```
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch


Ties = Literal["pessimistic", "optimistic", "mean"]
ArrayLike = np.ndarray | torch.Tensor | Sequence[Sequence[float]]
RECALL_AT = (1, 5, 10)


def _as_numpy(similarity: ArrayLike) -> np.ndarray:
    if isinstance(similarity, torch.Tensor):
        similarity = similarity.detach().float().cpu().numpy()
    array = np.asarray(similarity, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"similarity must be a 2-D [queries, gallery] matrix, got shape {array.shape}")
    if np.isnan(array).any():
        # NaN compares false with everything and would silently give rank 1; padding should be -inf instead.
        raise ValueError("similarity contains NaN; use -inf for padded or excluded candidates")
    return array


def ground_truth_ranks(similarity: ArrayLike, ground_truth: Sequence[int] | np.ndarray | None = None,
                       ties: Ties = "pessimistic") -> np.ndarray:
    """1-based rank of each query's ground-truth candidate.

    Args:
        similarity: `[Nq, Ng]` scores, higher is better.
        ground_truth: `[Nq]` gallery index of each query's match; `None` means the diagonal (`Nq == Ng`).
        ties: how candidates scoring exactly the ground truth's score are ordered (see the module docstring).

    Returns:
        `[Nq]` float64 ranks (integers unless `ties="mean"`).

    Example:

    ```python
    >>> ground_truth_ranks([[1.0, 1.0, 0.0], [0.0, 2.0, 3.0]], ground_truth=[0, 1])
    array([2., 2.])
    >>> ground_truth_ranks([[1.0, 1.0, 0.0]], ground_truth=[0], ties="optimistic")
    array([1.])
    ```
    """
    scores = _as_numpy(similarity)
    num_queries, num_gallery = scores.shape
    if ground_truth is None:
        if num_queries != num_gallery:
            raise ValueError(f"ground_truth=None means the diagonal, but similarity is {num_queries}x{num_gallery}")
        ground_truth = np.arange(num_queries)
    ground_truth = np.asarray(ground_truth, dtype=np.int64)
    if ground_truth.shape != (num_queries,):
        raise ValueError(f"ground_truth must have one index per query ({num_queries}), got shape {ground_truth.shape}")
    if ground_truth.size and (ground_truth.min() < 0 or ground_truth.max() >= num_gallery):
        raise ValueError(f"ground_truth indices must lie in [0, {num_gallery}), "
                         f"got {ground_truth.min()}..{ground_truth.max()}")
    target = scores[np.arange(num_queries), ground_truth][:, None]
    higher = (scores > target).sum(axis=1)
    tied_others = (scores == target).sum(axis=1) - 1  # the ground truth itself always ties with itself
    offset = {"pessimistic": tied_others, "optimistic": 0, "mean": tied_others / 2}
    if ties not in offset:
        raise ValueError(f"ties must be one of {sorted(offset)}, got {ties!r}")
    return (1 + higher + offset[ties]).astype(np.float64)


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent, median rank and mean rank of 1-based `ranks`.

    Example:

    ```python
    >>> metrics_from_ranks(np.array([1.0, 3.0, 12.0]))["R@5"], metrics_from_ranks(np.array([1.0, 3.0, 12.0]))["MdR"]
    (66.66666666666666, 3.0)
    ```
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no queries to evaluate")
    metrics = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_AT}
    metrics["MdR"] = float(np.median(ranks))
    metrics["MnR"] = float(np.mean(ranks))
    return metrics


def retrieval_metrics(similarity: ArrayLike, ground_truth: Sequence[int] | np.ndarray | None = None,
                      ties: Ties = "pessimistic") -> dict[str, float]:
    """R@1, R@5, R@10 (percent), MdR and MnR of one direction: query `q` should retrieve `ground_truth[q]`.

    Args:
        similarity: `[Nq, Ng]` scores, higher is better.
        ground_truth: `[Nq]` gallery index per query; `None` = the diagonal.
        ties: tie handling, pessimistic by default.

    Example:

    ```python
    >>> retrieval_metrics([[0.2, 0.9], [0.5, 0.1], [0.3, 0.4]], ground_truth=[1, 0, 0])["MnR"]
    1.3333333333333333
    ```
    """
    return metrics_from_ranks(ground_truth_ranks(similarity, ground_truth, ties))


def collapse_captions(similarity: ArrayLike, text_to_video: Sequence[int] | np.ndarray) -> np.ndarray:
    """CLIP4Clip's video→text matrix: `[Nv, Nv]` whose entry `(v, u)` is the best score of video `v` with any
    caption of video `u` (`-inf` where `u` has no caption).

    Args:
        similarity: `[Nt, Nv]` text-video scores.
        text_to_video: `[Nt]` video index of each caption.

    Example:

    ```python
    >>> collapse_captions([[1.0, 0.0], [3.0, 2.0], [0.5, 4.0]], text_to_video=[0, 0, 1])
    array([[3. , 0.5],
           [2. , 4. ]])
    ```
    """
    scores = _as_numpy(similarity)
    owners = np.asarray(text_to_video, dtype=np.int64)
    if owners.shape != (scores.shape[0],):
        raise ValueError(f"text_to_video must have one video index per caption ({scores.shape[0]}), got {owners.shape}")
    num_videos = scores.shape[1]
    if owners.size and (owners.min() < 0 or owners.max() >= num_videos):
        raise ValueError(f"text_to_video indices must lie in [0, {num_videos})")
    collapsed = np.full((num_videos, num_videos), -np.inf)
    # ufunc.at handles repeated owners (several captions per video) without a Python loop over captions.
    np.maximum.at(collapsed.T, owners, scores)
    return collapsed


def dual_softmax(similarity: ArrayLike, temperature: float = 1.0) -> np.ndarray:
    """Dual-softmax re-normalisation (DSL, Cheng et al. 2021) for ranking the *columns* for each row query:
    `S ⊙ softmax(S / temperature, over queries)`. It uses every test query at once (a transductive prior), so
    results with it must be labelled; off by default everywhere.

    Example:

    ```python
    >>> dual_softmax([[1.0, 1.0], [0.0, 1.0]]).round(3)
    array([[0.731, 0.5  ],
           [0.   , 0.5  ]])
    ```
    """
    scores = _as_numpy(similarity)
    logits = scores / temperature
    prior = np.exp(logits - logits.max(axis=0, keepdims=True))
    return scores * prior / prior.sum(axis=0, keepdims=True)


def text_video_retrieval_metrics(
    similarity: ArrayLike,
    text_to_video: Sequence[int] | np.ndarray | None = None,
    ties: Ties = "pessimistic",
    dual_softmax_temperature: float | None = None,
) -> dict[str, float]:
    """Both directions from one `[Nt, Nv]` text-video score matrix, keys `t2v/R@1`, ..., `v2t/MnR`.

    Args:
        similarity: `[Nt, Nv]` scores (e.g. `AvigateModel.similarity`).
        text_to_video: `[Nt]` video index of each caption; `None` = one caption per video in order (the diagonal).
        ties: tie handling, pessimistic by default.
        dual_softmax_temperature: when set, re-normalise with [`dual_softmax`] in each direction; the keys are then
            prefixed `t2v+dsl/` and `v2t+dsl/` so such numbers are never mistaken for plain ones.

    Example:

    ```python
    >>> scores = np.array([[5.0, 1.0], [4.0, 2.0], [0.0, 3.0]])  # captions 0, 1 -> video 0; caption 2 -> video 1
    >>> metrics = text_video_retrieval_metrics(scores, text_to_video=[0, 0, 1])
    >>> metrics["t2v/R@1"], metrics["v2t/R@1"]
    (100.0, 100.0)
    ```
    """
    scores = _as_numpy(similarity)
    num_texts, num_videos = scores.shape
    if text_to_video is None:
        if num_texts != num_videos:
            raise ValueError(
                f"text_to_video=None means one caption per video, but similarity is {num_texts}x{num_videos}"
            )
        text_to_video = np.arange(num_texts)
    text_to_video = np.asarray(text_to_video, dtype=np.int64)
    suffix = ""
    text_scores, video_scores = scores, scores.T
    if dual_softmax_temperature is not None:
        suffix = "+dsl"
        text_scores = dual_softmax(scores, dual_softmax_temperature)
        video_scores = dual_softmax(scores.T, dual_softmax_temperature)
    results = {f"t2v{suffix}/{name}": value
               for name, value in retrieval_metrics(text_scores, text_to_video, ties).items()}
    # Only videos with at least one caption are video→text queries (a caption-less video has no right answer).
    captioned = np.flatnonzero(np.bincount(text_to_video, minlength=num_videos) > 0)
    collapsed = collapse_captions(video_scores.T, text_to_video)[captioned]
    results.update({f"v2t{suffix}/{name}": value
                    for name, value in retrieval_metrics(collapsed, captioned, ties).items()})
    return results
