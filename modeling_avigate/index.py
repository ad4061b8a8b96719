# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Search your own videos with AVIGATE: embed a gallery once, then every text query is one text encoding plus a scan.

AVIGATE's audio-visual fusion does not depend on the query, so [`VideoIndex`] stores each video's fused,
L2-normalised frame embeddings (fp16), frame mask, global embedding and `has_audio` flag, and ranks videos with the
model's own multi-grained score ([`multi_grained_similarity`], what `AvigateModel.similarity` computes). Large
galleries can add a faiss first stage over the global embeddings that shortlists candidates for the exact re-rank.

On disk an index is a folder:

- `index.json`: format version, one entry per video (path, duration), the model (name, revision, config hash,
  weights fingerprint, logit scale), the processor settings, the first-stage mode, skipped files with their reasons,
  and the SHA-256 of every data file (so a corrupt or truncated file is detected on load);
- `embeddings.safetensors`: `frame_embeds` fp16 `[N, T, D]`, `video_mask` uint8 `[N, T]`, `video_embeds` fp32
  `[N, D]`, `has_audio` uint8 `[N]`;
- `first_stage.faiss` when a first stage was built.

Folders are written to a temporary sibling and renamed into place, so a crash never leaves a half-written index.

Example:

```python
>>> from modeling_avigate import AvigateModel
>>> from modeling_avigate.index import VideoIndex
>>> from modeling_avigate.processors import AvigateProcessor
>>> model = AvigateModel.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
>>> processor = AvigateProcessor.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
>>> index = VideoIndex.build(model, processor, "my_videos/", batch_size=8, num_workers=2)  # doctest: +SKIP
>>> index.save("my_videos.avigate")  # doctest: +SKIP
>>> index = VideoIndex.load("my_videos.avigate", model=model, processor=processor)  # doctest: +SKIP
>>> index.search("a dog barks at a car", k=5)[0].path  # doctest: +SKIP
'my_videos/dog.mp4'
```
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import av
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .evaluation import embed_texts
from .modeling_avigate import AvigateModel, multi_grained_similarity, pool_video_embeds
from .processors import AvigateCollator, AvigateVideoDataset
from .training import replace_directory_atomically


logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
FIRST_STAGE_FILE = "first_stage.faiss"
# Product quantisation of the "pq" first stage: 4-bit codes (16 centroids) for every 4 dimensions, trained on a sample.
PQ_DIMS_PER_CODE = 4
PQ_CENTROIDS = 16
PQ_TRAINING_VECTORS = 65_536
PQ_REFINE_FACTOR = 8
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp",
                    ".ts")
FirstStage = Literal["flat", "pq", "hnsw", "ivf"]
# Config keys that describe how a model was saved or loaded, not what it computes.
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "architectures", "auto_map", "dtype", "torch_dtype",
                         "_commit_hash", "_attn_implementation", "_attn_implementation_autoset", "output_attentions",
                         "output_hidden_states", "return_dict"}
# Processor settings that do not change the embeddings.
_VOLATILE_PROCESSOR_KEYS = {"decode_threads", "processor_class"}
# Scores are computed for at most this many (query, video, frame) triples at once; frames of a chunk are cast to
# float32 once per chunk, so memory stays bounded however large the gallery is.
SCORE_CHUNK_ELEMENTS = 1 << 22
# Keep a float32 copy of all frames when it is at most this large: casting fp16 → fp32 on every query costs more
# than the scan itself on CPUs without fast fp16 arithmetic.
FLOAT32_CACHE_BYTES = 1 << 30


class CorruptIndexError(ValueError):
    """An index folder is incomplete, truncated or altered since it was written."""


class IncompatibleModelError(ValueError):
    """The model (or processor) used for queries is not the one that built the index."""


@dataclass
class SearchResult:
    """One ranked video (or caption, for [`VideoIndex.rank_captions`])."""

    path: str
    score: float
    position: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Pure scoring: exact chunked scan, two-stage re-rank. The benchmark calls these directly on synthetic vectors.
# ---------------------------------------------------------------------------------------------------------------


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
    """Top-`k` videos of every query by the exact multi-grained score, scanning the gallery in chunks.

    Args:
        text_embeds: `[Nq, D]` normalised query embeddings (float32).
        frame_embeds: `[N, T, D]` normalised fused frames (fp16 or fp32).
        video_mask: `[N, T]`, nonzero for real frames.
        video_embeds: `[N, D]` global embeddings, `pool_video_embeds` of the same frames.
        logit_scale, lse_temperature: σ and λ of the model.
        k: results per query (clipped to N).
        chunk_elements: at most this many query × video × frame scores exist at once.

    Returns:
        `(scores [Nq, k], positions [Nq, k])`, best first.

    Example:

    ```python
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
    best_ids = torch.empty(num_queries, 0, dtype=torch.long)
    for start in range(0, num_videos, chunk):
        stop = min(start + chunk, num_videos)
        scores = multi_grained_similarity(
            text_embeds, video_embeds[start:stop].float(), frame_embeds[start:stop].float(), video_mask[start:stop],
            logit_scale, lse_temperature, chunk_elements,
        )
        ids = torch.arange(start, stop).expand(num_queries, -1)
        best_scores, best_ids = _merge_top_k(best_scores, best_ids, scores, ids, k)
    return best_scores, best_ids


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
    pads short lists). Returns `(scores [Nq, k], positions [Nq, k])` with -inf / -1 where fewer than `k` exist."""
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
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        out_scores[query, : order.numel()] = scores[order]
        out_ids[query, : order.numel()] = ids[order]
    return out_scores, out_ids


def _require_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("A first stage needs faiss: pip install 'modeling-avigate[retrieval]' (faiss-cpu)") from error
    return faiss


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
    faiss = _require_faiss()
    vectors = np.ascontiguousarray(video_embeds, dtype=np.float32)
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


def shortlist(first_stage, text_embeds: torch.Tensor, size: int, nprobe: int | None = None,
              ef_search: int | None = None) -> torch.Tensor:
    """Positions `[Nq, size]` of the `size` best global inner products per query (-1 pads), from a faiss index."""
    faiss = _require_faiss()
    if isinstance(first_stage, faiss.IndexIVF):
        first_stage.nprobe = nprobe or first_stage.nprobe
    if isinstance(first_stage, faiss.IndexHNSW):
        # efSearch must be at least the shortlist size, or HNSW returns fewer candidates than asked for.
        first_stage.hnsw.efSearch = max(ef_search or 0, size)
    _, ids = first_stage.search(np.ascontiguousarray(text_embeds.float().numpy()), size)
    return torch.from_numpy(ids)


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints and decoding.
# ---------------------------------------------------------------------------------------------------------------


def _strip_keys(value: Any, volatile: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: _strip_keys(item, volatile) for key, item in sorted(value.items()) if key not in volatile}
    return value


def config_hash(config) -> str:
    """SHA-256 of everything in a model config that changes what the model computes (not where it was loaded from)."""
    canonical = json.dumps(_strip_keys(config.to_dict(), _VOLATILE_CONFIG_KEYS), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def weights_fingerprint(model: AvigateModel) -> str:
    """SHA-256 of the projections, frame positions and logit scale: cheap, and differs between two checkpoints of
    the same architecture."""
    digest = hashlib.sha256()
    for tensor in (model.text_projection.weight, model.visual_projection.weight, model.audio_projection.weight,
                   model.frame_position_embedding.weight, model.logit_scale):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def processor_settings(processor) -> dict[str, Any]:
    """The processor's output-relevant settings (frame count, geometry, audio features), JSON-ready."""
    return _strip_keys(json.loads(json.dumps(processor.to_dict(), default=str)), _VOLATILE_PROCESSOR_KEYS)


def model_info(model: AvigateModel) -> dict[str, Any]:
    """What an index records about the model that built it."""
    return {
        "name_or_path": model.config._name_or_path,
        "revision": getattr(model.config, "_commit_hash", None),
        "config_hash": config_hash(model.config),
        "weights_fingerprint": weights_fingerprint(model),
        "logit_scale": model.get_logit_scale().item(),
        "lse_temperature": float(model.config.lse_temperature),
    }


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_videos(videos) -> list[str]:
    """Absolute paths of `videos`: a folder (searched recursively for video extensions, sorted), a list of paths, or
    a `datasets.Dataset` with a `video` column of paths."""
    if isinstance(videos, (str, os.PathLike)):
        folder = os.fspath(videos)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"video folder not found: {folder}")
        paths = sorted(
            os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if name.lower().endswith(VIDEO_EXTENSIONS)
        )
        if not paths:
            raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found in {folder}")
    elif hasattr(videos, "column_names"):
        if "video" not in videos.column_names:
            raise ValueError(f"the dataset needs a 'video' column of file paths; it has {videos.column_names}")
        paths = [item["path"] if isinstance(item, dict) else item for item in videos["video"]]
    elif isinstance(videos, Iterable):
        paths = [os.fspath(path) for path in videos]
    else:
        raise TypeError(f"videos must be a folder, a list of paths or a datasets.Dataset, got {type(videos).__name__}")
    return [os.path.abspath(path) for path in paths]


def _duration(path: str) -> float | None:
    """Container duration in seconds (header only), `None` when the container does not declare one."""
    with av.open(path) as container:
        return container.duration / av.time_base if container.duration is not None else None


# ---------------------------------------------------------------------------------------------------------------
# The index.
# ---------------------------------------------------------------------------------------------------------------


class VideoIndex:
    r"""
    A searchable gallery of videos embedded by an [`AvigateModel`].

    Build it with [`VideoIndex.build`], persist it with [`save`](VideoIndex.save) / [`load`](VideoIndex.load), grow
    it with [`add`](VideoIndex.add), query it with [`search`](VideoIndex.search) (text → videos) and
    [`rank_captions`](VideoIndex.rank_captions) (video → captions). Scores are exactly `AvigateModel.similarity` of
    the stored (fp16) frame embeddings.

    Attributes:
        entries: one `{"path", "duration"}` dict per video, in index order.
        frame_embeds: fp16 `[N, T, D]`; `video_mask` bool `[N, T]`; `video_embeds` fp32 `[N, D]`; `has_audio`
            bool `[N]`.
        info: model, processor and first-stage metadata (see the module docstring).
        failures: files that could not be decoded, `{"path", "error"}`.
        model, processor: attached for text encoding; `None` for an index loaded without them.

    Example (on random embeddings; real indexes come from `build`):

    ```python
    >>> import torch
    >>> frames = torch.nn.functional.normalize(torch.randn(3, 4, 256), dim=-1)
    >>> index = VideoIndex.from_embeddings(["a.mp4", "b.mp4", "c.mp4"], frames, torch.ones(3, 4))
    >>> index.search(frames[1, :1], k=2)[0][0].path  # one list of results per query embedding
    'b.mp4'
    ```
    """

    def __init__(
        self,
        entries: list[dict[str, Any]],
        frame_embeds: torch.Tensor,
        video_mask: torch.Tensor,
        has_audio: torch.Tensor,
        info: dict[str, Any],
        failures: list[dict[str, str]] | None = None,
        video_embeds: torch.Tensor | None = None,
        first_stage=None,
    ):
        if not (len(entries) == frame_embeds.shape[0] == video_mask.shape[0] == has_audio.shape[0]):
            raise ValueError(f"{len(entries)} entries but {frame_embeds.shape[0]} embeddings")
        self.entries = entries
        self.frame_embeds = frame_embeds.to(torch.float16)
        self.video_mask = video_mask.bool()
        self.has_audio = has_audio.bool()
        # The global embedding is pooled from the *stored* fp16 frames, so scores equal model.similarity on them.
        self.video_embeds = (pool_video_embeds(self.frame_embeds.float(), self.video_mask)
                             if video_embeds is None else video_embeds.float())
        self.info = info
        self.failures = list(failures or [])
        self.first_stage = first_stage
        self.model: AvigateModel | None = None
        self.processor = None
        self._float_frames: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        stage = self.info.get("first_stage") or {"kind": "exact"}
        return (f"VideoIndex({len(self)} videos, {self.frame_embeds.shape[1]} frames x {self.frame_embeds.shape[2]}, "
                f"model={self.info['model'].get('name_or_path')!r}, first_stage={stage['kind']!r})")

    @property
    def paths(self) -> list[str]:
        return [entry["path"] for entry in self.entries]

    # -- construction -----------------------------------------------------------------------------------------------

    @classmethod
    def from_embeddings(cls, paths: Sequence[str], frame_embeds: torch.Tensor, video_mask: torch.Tensor | None = None,
                        has_audio: torch.Tensor | None = None, logit_scale: float = 100.0,
                        lse_temperature: float = 1.0) -> "VideoIndex":
        """An index over precomputed normalised frame embeddings `[N, T, D]` (no model attached; query with
        embeddings)."""
        if video_mask is None:
            video_mask = torch.ones(frame_embeds.shape[:2], dtype=torch.bool)
        if has_audio is None:
            has_audio = torch.zeros(frame_embeds.shape[0], dtype=torch.bool)
        info = {"model": {"logit_scale": logit_scale, "lse_temperature": lse_temperature}, "processor": None,
                "first_stage": None}
        return cls([{"path": os.fspath(path), "duration": None} for path in paths], frame_embeds, video_mask,
                   has_audio, info)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: AvigateModel,
        processor,
        videos,
        batch_size: int = 8,
        num_workers: int = 0,
        first_stage: FirstStage | None = None,
        shortlist_size: int = 256,
        progress: bool = True,
    ) -> "VideoIndex":
        """Embed `videos` (a folder, a list of paths or a `datasets.Dataset` with a `video` column).

        Args:
            model: the AVIGATE model; runs on its current device, in eval mode.
            processor: the matching `AvigateProcessor`.
            videos: what to index.
            batch_size: videos per forward pass.
            num_workers: DataLoader processes that decode in parallel.
            first_stage: optional faiss first stage (`"flat"`, `"pq"`, `"hnsw"`, `"ivf"`) over the global embeddings.
            shortlist_size: candidates the first stage hands to the exact re-rank (stored as the default).
            progress: show a progress bar.

        Files that fail to decode are skipped, logged and listed in `failures`.
        """
        paths = resolve_videos(videos)
        info = {"model": model_info(model), "processor": processor_settings(processor), "first_stage": None}
        index = cls([], *cls._empty_tensors(model, processor), info)
        index.attach(model, processor)
        index._embed_and_append(paths, batch_size, num_workers, progress)
        if first_stage is not None:
            index.build_first_stage(first_stage, shortlist_size)
        return index

    @staticmethod
    def _empty_tensors(model: AvigateModel, processor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        num_frames, dim = processor.num_frames, model.config.projection_dim
        return (torch.empty(0, num_frames, dim, dtype=torch.float16), torch.empty(0, num_frames, dtype=torch.bool),
                torch.empty(0, dtype=torch.bool))

    def _embed_and_append(self, paths: list[str], batch_size: int, num_workers: int, progress: bool) -> None:
        model, processor = self._require_model()
        model.eval()
        device = model.device
        loader = DataLoader(AvigateVideoDataset(processor, paths, on_error="skip"), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=AvigateCollator(processor))
        frames, masks, audio, entries, failures = [], [], [], [], []
        with tqdm(total=len(paths), desc="indexing videos", unit="video", disable=not progress) as bar:
            for batch in loader:
                for position, error in batch["errors"]:
                    logger.warning("skipping %s: %s", paths[position], error)
                    failures.append({"path": paths[position], "error": error})
                if len(batch["indices"]):
                    outputs = model.get_video_features(
                        batch["pixel_values"].to(device, model.dtype), batch["video_mask"].to(device),
                        batch["input_values"].to(device, model.dtype), batch["has_audio"].to(device),
                    )
                    frames.append(outputs.last_hidden_state.to("cpu", torch.float16))
                    masks.append(outputs.video_mask.cpu().bool())
                    audio.append(batch["has_audio"].bool())
                    entries.extend({"path": paths[i], "duration": _duration(paths[i])}
                                   for i in batch["indices"].tolist())
                bar.update(len(batch["indices"]) + len(batch["errors"]))
        if failures:
            logger.warning("%d of %d videos could not be decoded and were skipped", len(failures), len(paths))
        if frames:
            new_frames = torch.cat(frames)
            new_mask = torch.cat(masks)
            self._append(entries, new_frames, new_mask, torch.cat(audio),
                         pool_video_embeds(new_frames.float(), new_mask))
        self.failures.extend(failures)

    def _append(self, entries, frame_embeds, video_mask, has_audio, video_embeds) -> None:
        if frame_embeds.shape[1:] != self.frame_embeds.shape[1:]:
            raise ValueError(f"new embeddings have shape {tuple(frame_embeds.shape[1:])}, the index holds "
                             f"{tuple(self.frame_embeds.shape[1:])} (frames, dim)")
        self.entries = self.entries + list(entries)
        self.frame_embeds = torch.cat([self.frame_embeds, frame_embeds.to(torch.float16)])
        self.video_mask = torch.cat([self.video_mask, video_mask.bool()])
        self.has_audio = torch.cat([self.has_audio, has_audio.bool()])
        self.video_embeds = torch.cat([self.video_embeds, video_embeds.float()])
        self._float_frames = None
        if self.first_stage is not None:
            self.first_stage.add(np.ascontiguousarray(video_embeds.float().numpy()))

    def add(self, videos, batch_size: int = 8, num_workers: int = 0, progress: bool = True) -> list[str]:
        """Embed and append the videos not yet in the index (by absolute path); returns the paths it embedded.
        Old videos are not re-embedded, and files that failed before are tried again."""
        known = set(self.paths)
        paths = [path for path in resolve_videos(videos) if path not in known]
        retried = set(paths)
        self.failures = [failure for failure in self.failures if failure["path"] not in retried]
        before = len(self)
        self._embed_and_append(paths, batch_size, num_workers, progress)
        return self.paths[before:]

    @classmethod
    def merge(cls, shards: Sequence["VideoIndex"], order: Sequence[str] | None = None) -> "VideoIndex":
        """One index from shards built by the same model and processor; `order` (paths) sets the video order, e.g.
        the order a single-process build would have used. A first stage is not merged: rebuild it on the result."""
        if not shards:
            raise ValueError("merge needs at least one shard")
        reference = shards[0].info
        for shard in shards[1:]:
            if shard.info["model"] != reference["model"] or shard.info["processor"] != reference["processor"]:
                raise IncompatibleModelError("cannot merge shards built by different models or processors")
        entries = [entry for shard in shards for entry in shard.entries]
        position = {entry["path"]: i for i, entry in enumerate(entries)}
        permutation = torch.arange(len(entries))
        if order is not None:
            permutation = torch.tensor([position[path] for path in order if path in position], dtype=torch.long)
        merged = cls(
            [entries[i] for i in permutation.tolist()],
            torch.cat([shard.frame_embeds for shard in shards])[permutation],
            torch.cat([shard.video_mask for shard in shards])[permutation],
            torch.cat([shard.has_audio for shard in shards])[permutation],
            {**reference, "first_stage": None},
            [failure for shard in shards for failure in shard.failures],
            torch.cat([shard.video_embeds for shard in shards])[permutation],
        )
        return merged

    def build_first_stage(self, kind: FirstStage, shortlist_size: int = 256, nprobe: int = 32,
                          nlist: int | None = None) -> None:
        """(Re)build the faiss first stage over the global embeddings; the mode is recorded in `info`."""
        self.first_stage = build_first_stage(self.video_embeds.numpy(), kind, nlist=nlist)
        settings = {"kind": kind, "shortlist_size": shortlist_size}
        if kind == "pq":
            settings.update(refine_factor=int(self.first_stage.k_factor))
        if kind == "ivf":
            self.first_stage.nprobe = nprobe
            settings.update(nlist=self.first_stage.nlist, nprobe=nprobe)
        self.info["first_stage"] = settings

    # -- model ------------------------------------------------------------------------------------------------------

    def check_model(self, model: AvigateModel, processor=None) -> None:
        """Raise [`IncompatibleModelError`] unless `model` (and `processor`) are the ones that built the index."""
        built = self.info["model"]
        if "config_hash" not in built:
            return  # built from raw embeddings: nothing to compare
        problems = []
        if config_hash(model.config) != built["config_hash"]:
            problems.append("its config differs")
        elif weights_fingerprint(model) != built["weights_fingerprint"]:
            problems.append("its weights differ")
        if processor is not None and self.info.get("processor") is not None:
            if processor_settings(processor) != self.info["processor"]:
                problems.append("the processor settings differ")
        if problems:
            raise IncompatibleModelError(
                f"the index was built by {built.get('name_or_path')!r}, not by this model ({', '.join(problems)}); "
                "rebuild the index or pass force=True"
            )

    def attach(self, model: AvigateModel, processor, force: bool = False) -> "VideoIndex":
        """Use `model` and `processor` for text queries and `add`; refused if they did not build the index unless
        `force=True`."""
        if not force:
            self.check_model(model, processor)
        self.model, self.processor = model, processor
        return self

    def _require_model(self):
        if self.model is None or self.processor is None:
            raise ValueError("no model attached: pass model= and processor= to VideoIndex.load, or call attach()")
        return self.model, self.processor

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings `[Nq, D]` (float32, CPU) from the attached model."""
        return embed_texts(*self._require_model(), texts)

    def _scales(self) -> tuple[float, float]:
        if self.model is not None:
            return self.model.get_logit_scale().item(), float(self.model.config.lse_temperature)
        return self.info["model"]["logit_scale"], self.info["model"]["lse_temperature"]

    # -- search -----------------------------------------------------------------------------------------------------

    def _frames_for_scan(self) -> torch.Tensor:
        if self._float_frames is None and self.frame_embeds.numel() * 4 <= FLOAT32_CACHE_BYTES:
            self._float_frames = self.frame_embeds.float()
        return self.frame_embeds if self._float_frames is None else self._float_frames

    def search_embeddings(self, text_embeds: torch.Tensor, k: int = 10, exact: bool = False,
                          shortlist_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scores [Nq, k], positions [Nq, k])` for normalised query embeddings; two-stage when the index has a
        first stage (unless `exact`), else an exact chunked scan."""
        if len(self) == 0:
            raise ValueError("the index is empty")
        text_embeds = text_embeds.float().cpu()
        logit_scale, lse_temperature = self._scales()
        frames = self._frames_for_scan()
        if self.first_stage is None or exact:
            return exact_search(text_embeds, frames, self.video_mask, self.video_embeds, logit_scale,
                                lse_temperature, k)
        size = max(k, shortlist_size or self.info["first_stage"]["shortlist_size"])
        candidates = shortlist(self.first_stage, text_embeds, min(size, len(self)),
                               nprobe=self.info["first_stage"].get("nprobe"))
        return rerank_candidates(text_embeds, candidates, frames, self.video_mask, self.video_embeds, logit_scale,
                                 lse_temperature, k)

    def search(self, queries: str | Sequence[str] | torch.Tensor, k: int = 10, exact: bool = False,
               shortlist_size: int | None = None) -> list[SearchResult] | list[list[SearchResult]]:
        """Rank the indexed videos for text queries by AVIGATE's multi-grained score.

        Args:
            queries: one caption, a list of captions, or normalised text embeddings `[Nq, D]` (no model needed).
            k: results per query.
            exact: scan every video even when a first stage exists.
            shortlist_size: first-stage candidates per query (default: the one stored in the index).

        Returns:
            For a single caption a list of [`SearchResult`], best first; otherwise one such list per query.
        """
        single = isinstance(queries, str)
        if isinstance(queries, torch.Tensor):
            text_embeds = queries if queries.dim() == 2 else queries[None]
        else:
            text_embeds = self.encode_text([queries] if single else list(queries))
        scores, positions = self.search_embeddings(text_embeds, k, exact, shortlist_size)
        results = [
            [SearchResult(self.entries[p]["path"], s, p) for s, p in zip(row_scores, row_ids) if p >= 0]
            for row_scores, row_ids in zip(scores.tolist(), positions.tolist())
        ]
        return results[0] if single else results

    @torch.no_grad()
    def rank_captions(self, video: str | int, captions: Sequence[str]) -> list[SearchResult]:
        """Rank `captions` for one video: an indexed path or position, or any other file (embedded on the fly).
        Results carry the caption in `path` and its list position in `position`."""
        model, processor = self._require_model()
        if isinstance(video, int):
            frames, mask = self.frame_embeds[video], self.video_mask[video]
        elif os.path.abspath(video) in self.paths:
            position = self.paths.index(os.path.abspath(video))
            frames, mask = self.frame_embeds[position], self.video_mask[position]
        else:
            inputs = processor(videos=[video], return_tensors="pt")
            outputs = model.get_video_features(
                inputs["pixel_values"].to(model.device, model.dtype), inputs["video_mask"].to(model.device),
                inputs["input_values"].to(model.device, model.dtype), inputs["has_audio"].to(model.device),
            )
            frames, mask = outputs.last_hidden_state[0].to("cpu", torch.float16), outputs.video_mask[0].cpu()
        text_embeds = self.encode_text(captions)
        logit_scale, lse_temperature = self._scales()
        frames = frames.float()[None]
        scores = multi_grained_similarity(text_embeds, pool_video_embeds(frames, mask[None]), frames, mask[None],
                                          logit_scale, lse_temperature)[:, 0]
        order = torch.sort(scores, descending=True, stable=True).indices.tolist()
        return [SearchResult(captions[i], float(scores[i]), i) for i in order]

    # -- persistence --------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the index folder atomically (a temporary sibling folder renamed into place)."""
        path = os.path.abspath(os.fspath(path))
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        try:
            embeddings = os.path.join(staging, EMBEDDINGS_FILE)
            save_file({
                "frame_embeds": self.frame_embeds.contiguous(),
                "video_mask": self.video_mask.to(torch.uint8).contiguous(),
                "video_embeds": self.video_embeds.contiguous(),
                "has_audio": self.has_audio.to(torch.uint8).contiguous(),
            }, embeddings)
            checksums = {EMBEDDINGS_FILE: _sha256_file(embeddings)}
            if self.first_stage is not None:
                faiss = _require_faiss()
                faiss.write_index(self.first_stage, os.path.join(staging, FIRST_STAGE_FILE))
                checksums[FIRST_STAGE_FILE] = _sha256_file(os.path.join(staging, FIRST_STAGE_FILE))
            metadata = {
                "format_version": FORMAT_VERSION,
                "num_videos": len(self),
                "num_frames": self.frame_embeds.shape[1],
                "dim": self.frame_embeds.shape[2],
                **self.info,
                "checksums": checksums,
                "videos": self.entries,
                "failures": self.failures,
            }
            with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as handle:
                json.dump(metadata, handle, indent=1)
            replace_directory_atomically(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
        """The parsed `index.json` of an index folder (model, processor, first stage, videos), without loading the
        embeddings."""
        metadata_path = os.path.join(os.fspath(path), METADATA_FILE)
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(f"no AVIGATE index at {os.fspath(path)} ({METADATA_FILE} not found)")
        try:
            with open(metadata_path, encoding="utf-8") as handle:
                metadata = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptIndexError(f"{metadata_path} is not valid JSON ({error}); the index is corrupt") from error
        if metadata.get("format_version") != FORMAT_VERSION:
            raise CorruptIndexError(f"{metadata_path}: unsupported index format {metadata.get('format_version')!r} "
                                    f"(this version reads {FORMAT_VERSION})")
        return metadata

    @classmethod
    def load(cls, path: str | os.PathLike, model: AvigateModel | None = None, processor=None, force: bool = False,
             verify: bool = True) -> "VideoIndex":
        """Read an index folder.

        Args:
            path: the folder written by [`save`](VideoIndex.save).
            model, processor: attach them for text queries; refused if they did not build the index (see
                [`check_model`](VideoIndex.check_model)) unless `force=True`.
            verify: check the SHA-256 of every data file (reads each file once more; turn off for huge indexes
                on trusted storage).

        Raises:
            FileNotFoundError: no index at `path`.
            CorruptIndexError: a file is missing, truncated, altered or inconsistent with `index.json`.
            IncompatibleModelError: `model` differs from the one that built the index.
        """
        path = os.fspath(path)
        metadata = cls.read_metadata(path)
        for name, expected in metadata["checksums"].items():
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                raise CorruptIndexError(f"{file} is missing; the index is incomplete")
            if verify and _sha256_file(file) != expected:
                raise CorruptIndexError(f"{file} does not match its checksum in {METADATA_FILE} (corrupt or "
                                        "truncated); rebuild the index")
        embeddings = os.path.join(path, EMBEDDINGS_FILE)
        try:
            tensors = load_file(embeddings)
        except (SafetensorError, OSError) as error:
            raise CorruptIndexError(f"{embeddings} cannot be read ({error}); rebuild the index") from error
        expected_shape = (metadata["num_videos"], metadata["num_frames"], metadata["dim"])
        if tuple(tensors["frame_embeds"].shape) != expected_shape or len(metadata["videos"]) != expected_shape[0]:
            raise CorruptIndexError(f"{embeddings} holds {tuple(tensors['frame_embeds'].shape)} frame embeddings, "
                                    f"{METADATA_FILE} describes {expected_shape}")
        first_stage = None
        if metadata.get("first_stage"):
            first_stage = _require_faiss().read_index(os.path.join(path, FIRST_STAGE_FILE))
        info = {key: metadata[key] for key in ("model", "processor", "first_stage")}
        index = cls(metadata["videos"], tensors["frame_embeds"], tensors["video_mask"], tensors["has_audio"], info,
                    metadata["failures"], tensors["video_embeds"], first_stage)
        if model is not None:
            index.attach(model, processor, force=force)
        return index


def build_sharded(
    model: AvigateModel,
    processor,
    videos,
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    num_workers: int = 0,
    first_stage: FirstStage | None = None,
    shortlist_size: int = 256,
    progress: bool = True,
) -> VideoIndex | None:
    """Build and save an index with every process of an `accelerate launch` / `torchrun` job (one process works
    too): process `r` of `W` embeds files `r, r+W, ...`, writes its shard to `OUTPUT.shards/`, and the main process
    merges the shards in the single-process order, builds the first stage and saves `output_dir`.

    Returns the saved index on the main process, `None` on the others.
    """
    from accelerate import PartialState

    state = PartialState()
    paths = resolve_videos(videos)
    output_dir = os.path.abspath(os.fspath(output_dir))
    model.to(state.device)
    shard = VideoIndex.build(model, processor, paths[state.process_index :: state.num_processes], batch_size,
                             num_workers, progress=progress and state.is_local_main_process)
    if state.num_processes == 1:
        merged = shard
    else:
        shard_dir = output_dir + ".shards"
        shard.save(os.path.join(shard_dir, f"shard-{state.process_index:05d}"))
        state.wait_for_everyone()
        merged = None
        if state.is_main_process:
            shards = [VideoIndex.load(os.path.join(shard_dir, f"shard-{rank:05d}"))
                      for rank in range(state.num_processes)]
            merged = VideoIndex.merge(shards, order=paths)
            shutil.rmtree(shard_dir)
    if merged is not None:
        merged.attach(model, processor)
        if first_stage is not None:
            merged.build_first_stage(first_stage, shortlist_size)
        merged.save(output_dir)
    state.wait_for_everyone()
    return merged
