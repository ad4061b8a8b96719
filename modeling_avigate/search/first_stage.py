# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""faiss first stages over the global video embeddings: build one, shortlist candidates with it, and check that one
read from disk is the kind, size and dimension its index says it is."""

from typing import TYPE_CHECKING, Literal

import numpy as np


if TYPE_CHECKING:  # torch is imported where it is used: `avigate info` reads an index's format without it
    import torch


# Product quantisation of the "pq" first stage: 4-bit codes (16 centroids) for every 4 dimensions, trained on a sample.
PQ_DIMS_PER_CODE = 4
PQ_CENTROIDS = 16
PQ_TRAINING_VECTORS = 65_536
PQ_REFINE_FACTOR = 8
FirstStage = Literal["flat", "pq", "hnsw", "ivf"]
FIRST_STAGE_KINDS = ("flat", "pq", "hnsw", "ivf")


def require_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("A first stage needs faiss: pip install 'modeling-avigate[retrieval]' (faiss-cpu)") from error
    return faiss


def first_stage_vectors(video_embeds: np.ndarray) -> np.ndarray:
    """Global embeddings as faiss stores them: contiguous float32, a row holding NaN or inf stored as zeros. One such
    row would make k-means (`pq`, `ivf`) train NaN centroids that break every list; a zero row is harmless, and the
    exact re-rank never ranks it."""
    vectors = np.array(video_embeds, dtype=np.float32, order="C")
    vectors[~np.isfinite(vectors).all(axis=1)] = 0.0
    return vectors


def build_first_stage(video_embeds: np.ndarray, kind: FirstStage, nlist: int | None = None, hnsw_m: int = 32,
                      refine_factor: int = PQ_REFINE_FACTOR, seed: int = 0):
    """A faiss inner-product index over the global embeddings `[N, D]` (float32), positions as ids.

    Args:
        video_embeds: global video embeddings, in index order.
        kind: `"flat"` (exact inner product), `"pq"` (every video scanned in 4-bit product-quantised form, 32× smaller
            than float32, and the `refine_factor × size` best re-scored exactly), `"hnsw"` (graph, no training) or
            `"ivf"` (inverted lists; trained with k-means on up to 64 vectors per list).
        nlist: IVF lists; default `√N` (faiss suggests 4–16 √N, but k-means training then dominates the build on a
            CPU; a larger `nprobe` recovers the recall).
        hnsw_m: HNSW graph degree.
        refine_factor: for `"pq"`, how many times the requested shortlist the quantised scan hands to the exact
            global re-score.
        seed: k-means seed, so rebuilding gives the same index.
    """
    faiss = require_faiss()
    vectors = first_stage_vectors(video_embeds)
    num_videos, dim = vectors.shape
    rng = np.random.default_rng(seed)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "pq":
        if dim % PQ_DIMS_PER_CODE or num_videos < PQ_CENTROIDS:
            raise ValueError(f"first_stage='pq' needs an embedding size divisible by {PQ_DIMS_PER_CODE} and at least "
                             f"{PQ_CENTROIDS} videos (got D={dim}, N={num_videos}); use 'flat' for small galleries")
        # Fast-scan PQ: one 4-bit code per 4 dimensions, scanned with SIMD lookups; the refine stage keeps the
        # float32 vectors and re-scores the quantised scan's best candidates exactly.
        index = faiss.index_factory(dim, f"PQ{dim // PQ_DIMS_PER_CODE}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
        index.k_factor = refine_factor
        clustering = faiss.downcast_index(index.base_index).pq.cp
        clustering.seed = seed
        # 16 centroids per sub-quantiser are well fitted by a few hundred videos; faiss would warn below 39 points per
        # centroid (624 videos) on every one of the D/4 sub-quantisers.
        clustering.min_points_per_centroid = 1
        index.train(vectors[np.sort(rng.permutation(num_videos)[:PQ_TRAINING_VECTORS])])
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = nlist or int(np.clip(round(np.sqrt(num_videos)), 1, max(num_videos, 1)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors[np.sort(rng.permutation(num_videos)[: 64 * nlist])])
    else:
        raise ValueError(f"first_stage must be 'flat', 'pq', 'hnsw' or 'ivf', got {kind!r}")
    index.add(vectors)
    return index


def shortlist(first_stage, text_embeds: "torch.Tensor", size: int, nprobe: int | None = None,
              ef_search: int | None = None) -> "torch.Tensor":
    """Positions `[Nq, size]` of the `size` best global inner products per query (-1 pads), from a faiss index."""
    import torch

    faiss = require_faiss()
    if isinstance(first_stage, faiss.IndexIVF):
        first_stage.nprobe = nprobe or first_stage.nprobe
    if isinstance(first_stage, faiss.IndexHNSW):
        # efSearch must be at least the shortlist size, or HNSW returns fewer candidates than asked for.
        first_stage.hnsw.efSearch = max(ef_search or 0, size)
    _, ids = first_stage.search(np.ascontiguousarray(text_embeds.float().numpy()), size)
    return torch.from_numpy(ids)


def first_stage_kind(first_stage) -> str | None:
    """Which of [`FIRST_STAGE_KINDS`] a faiss index is (as [`build_first_stage`] makes them), `None` if none."""
    faiss = require_faiss()
    if isinstance(first_stage, faiss.IndexRefine):
        return "pq" if isinstance(faiss.downcast_index(first_stage.base_index), faiss.IndexPQFastScan) else None
    for kind, index_type in (("hnsw", faiss.IndexHNSW), ("ivf", faiss.IndexIVF), ("flat", faiss.IndexFlat)):
        if isinstance(first_stage, index_type):
            return kind
    return None


def first_stage_mismatches(first_stage, kind: str, num_videos: int, dim: int) -> list[str]:
    """How a first stage read from disk differs from what its index records (empty when it matches): a stage with
    fewer vectors would silently shrink every shortlist, one of another dimension would fail at query time."""
    faiss = require_faiss()
    found = first_stage_kind(first_stage)
    problems = [] if found == kind else [f"it is a {found or type(first_stage).__name__} index, not {kind}"]
    if first_stage.d != dim:
        problems.append(f"dimension {first_stage.d} instead of {dim}")
    if first_stage.ntotal != num_videos:
        problems.append(f"{first_stage.ntotal} vectors instead of {num_videos}")
    if first_stage.metric_type != faiss.METRIC_INNER_PRODUCT:
        problems.append("not an inner-product index")
    return problems


__all__ = [
    "FIRST_STAGE_KINDS",
    "FirstStage",
    "build_first_stage",
    "first_stage_kind",
    "first_stage_mismatches",
    "first_stage_vectors",
    "require_faiss",
    "shortlist",
]
