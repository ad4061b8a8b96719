# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""[`VideoIndex`]: a searchable gallery of videos embedded by an `AvigateModel`. How it grows and shrinks is in
`updates`, its folder on disk in `storage`."""

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..embedding import EmbeddingOptions, embed_texts
from ..fingerprints import config_hash, file_signature, strip_keys, weights_fingerprint
from ..modeling_avigate import AvigateModel, multi_grained_similarity, pool_video_embeds
from .first_stage import FirstStage, build_first_stage, shortlist
from .kernels import exact_search, rerank_candidates
from .metadata import IncompatibleModelError, read_metadata
from .previews import VideoPreviews
from .storage import read_index_folder, write_index_folder
from .updates import IndexUpdates, segment_settings


# Processor settings that do not change the embeddings. `auto_map` (where remote code finds the classes) is added by
# `save_pretrained` to the processor it is called on, so a saved and reloaded processor would otherwise differ.
_VOLATILE_PROCESSOR_KEYS = {"auto_map", "decode_threads", "processor_class"}
# Grouped per file, a search ranks this many segments per requested file, so a result can list its file's other
# matching segments.
OTHERS_WINDOW = 4
# Keep a float32 copy of all frames when it is at most this large: casting fp16 → fp32 on every query costs more
# than the scan itself on CPUs without fast fp16 arithmetic.
FLOAT32_CACHE_BYTES = 1 << 30


@dataclass
class SearchResult:
    """One ranked segment of a video file (or a caption, for [`VideoIndex.rank_captions`]).

    Attributes:
        path: the file (the caption for `rank_captions`).
        score: AVIGATE's multi-grained score of the segment.
        position: the segment's row in the index (the caption's list position for `rank_captions`).
        start, end: the segment's span in seconds (`None` for a caption or an index built from raw embeddings).
        others: with results grouped per file, the file's other segments that ranked, best first.
    """

    path: str
    score: float
    position: int
    start: float | None = None
    end: float | None = None
    others: list["SearchResult"] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_reference(name_or_path: str) -> str:
    """How an index names its model: the absolute path of a local folder (so the index works from any working
    directory), otherwise the Hub id as given."""
    return os.path.abspath(name_or_path) if name_or_path and os.path.isdir(name_or_path) else name_or_path


def processor_settings(processor) -> dict[str, Any]:
    """The processor's output-relevant settings (frame count, geometry, audio features), JSON-ready."""
    return strip_keys(json.loads(json.dumps(processor.to_dict(), default=str)), _VOLATILE_PROCESSOR_KEYS)


def model_info(model: AvigateModel) -> dict[str, Any]:
    """What an index records about the model that built it: where to find it and the fingerprints it must match."""
    return {
        "name_or_path": model_reference(model.config._name_or_path),
        "revision": getattr(model.config, "_commit_hash", None),
        "config_hash": config_hash(model.config),
        "weights_fingerprint": weights_fingerprint(model),
        "logit_scale": model.get_logit_scale().item(),
        "lse_temperature": float(model.config.lse_temperature),
    }


class VideoIndex(IndexUpdates):
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
        previews: poster frames, sampled-frame times and audio gates per video ([`VideoPreviews`]), what the
            search page shows.
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
        previews: VideoPreviews | None = None,
    ):
        if previews is None:
            previews = VideoPreviews.empty(len(entries), frame_embeds.shape[1])
        if not (len(entries) == frame_embeds.shape[0] == video_mask.shape[0] == has_audio.shape[0] == len(previews)):
            raise ValueError(f"{len(entries)} entries but {frame_embeds.shape[0]} embeddings and {len(previews)} "
                             "previews")
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
        self.previews = previews
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

    def video_file(self, position: int) -> str:
        """The file of the video at `position`, only while it is the file that was indexed: a regular video file of
        the recorded size and header hash (a copy elsewhere, e.g. after `relocate_videos`, qualifies). What a server
        may hand out; no other path read from `index.json` is.

        Raises:
            LookupError: no such video in the index.
            FileNotFoundError: the file was moved, deleted or changed since it was indexed, or the index records no
                signature for it (built from raw embeddings).
        """
        if not 0 <= position < len(self):
            raise LookupError(f"no video number {position} in the index")
        entry = self.entries[position]
        name = os.path.basename(entry["path"])
        if "header_sha256" not in entry:
            raise FileNotFoundError(f"{name}: the index records no signature of this file, so it is not served")
        if not os.path.isfile(entry["path"]):
            raise FileNotFoundError(f"{name} was moved or deleted since it was indexed")
        signature = file_signature(entry["path"])
        if (signature["size"], signature["header_sha256"]) != (entry["size"], entry["header_sha256"]):
            raise FileNotFoundError(f"{name} was changed since it was indexed (rebuild or update the index)")
        return entry["path"]

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
                "first_stage": None, "segments": segment_settings(EmbeddingOptions())}
        return cls([{"path": os.fspath(path), "start": None, "end": None, "duration": None} for path in paths],
                   frame_embeds, video_mask, has_audio, info)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: AvigateModel,
        processor,
        videos,
        options: EmbeddingOptions = EmbeddingOptions(),
        first_stage: FirstStage | None = None,
        shortlist_size: int = 256,
    ) -> "VideoIndex":
        """Embed `videos` (a folder, a list of paths or a `datasets.Dataset` with a `video` column).

        Args:
            model: the AVIGATE model; runs on its current device, in eval mode.
            processor: the matching `AvigateProcessor`.
            videos: what to index.
            options: batch size, decoding workers, strictness, progress bar, encoder precision and how files are cut
                into segments ([`EmbeddingOptions`]; `segment_seconds=None` embeds each file whole).
            first_stage: optional faiss first stage (`"flat"`, `"pq"`, `"hnsw"`, `"ivf"`) over the global embeddings.
            shortlist_size: candidates the first stage hands to the exact re-rank (stored as the default).

        Files that cannot be used (`MediaError`) are skipped, logged and listed in `failures`; with `options.strict`
        the first one raises its `MediaError`.
        """
        index = cls.empty(model, processor, options)
        index.add(videos, options)
        if first_stage is not None:
            index.build_first_stage(first_stage, shortlist_size)
        return index

    @classmethod
    def empty(cls, model: AvigateModel, processor, options: EmbeddingOptions = EmbeddingOptions()) -> "VideoIndex":
        """An index of no videos for `model` and `processor` (attached), cutting files as `options` says; grow it
        with [`add`](VideoIndex.add)."""
        info = {"model": model_info(model), "processor": processor_settings(processor), "first_stage": None,
                "segments": segment_settings(options)}
        index = cls([], *cls._empty_tensors(model, processor), info)
        return index.attach(model, processor)

    @staticmethod
    def _empty_tensors(model: AvigateModel, processor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        num_frames, dim = processor.video_processor.num_frames, model.config.projection_dim
        return (torch.empty(0, num_frames, dim, dtype=torch.float16), torch.empty(0, num_frames, dtype=torch.bool),
                torch.empty(0, dtype=torch.bool))

    @property
    def files(self) -> list[str]:
        """The indexed files, each once, in index order."""
        return list(dict.fromkeys(self.paths))

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

    def model_mismatches(self, model: AvigateModel, processor=None) -> list[str]:
        """How `model` (and `processor`) differ from the ones that built the index, by config hash, weights
        fingerprint and processor settings; empty when they match or the index was built from raw embeddings."""
        built = self.info["model"]
        if "config_hash" not in built:
            return []
        problems = []
        if config_hash(model.config) != built["config_hash"]:
            problems.append("its config differs")
        elif weights_fingerprint(model) != built.get("weights_fingerprint"):
            problems.append("its weights differ")
        if processor is not None and self.info.get("processor") is not None:
            # Stripped on both sides: indexes written before a key became volatile still store it.
            if processor_settings(processor) != strip_keys(self.info["processor"], _VOLATILE_PROCESSOR_KEYS):
                problems.append("the processor settings differ")
        return problems

    def check_model(self, model: AvigateModel, processor=None) -> None:
        """Raise [`IncompatibleModelError`] unless `model` (and `processor`) are the ones that built the index."""
        problems = self.model_mismatches(model, processor)
        if problems:
            raise IncompatibleModelError(
                f"the index was built by {self.info['model'].get('name_or_path')!r}, not by this model "
                f"({', '.join(problems)}); rebuild the index or pass force=True"
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
               shortlist_size: int | None = None, per_file: bool = True
               ) -> list[SearchResult] | list[list[SearchResult]]:
        """Rank the indexed segments for text queries by AVIGATE's multi-grained score.

        Args:
            queries: one caption, a list of captions, or normalised text embeddings `[Nq, D]` (no model needed).
            k: results per query: files with `per_file` (the default), else segments.
            exact: scan every segment even when a first stage exists.
            shortlist_size: first-stage candidates per query (default: the one stored in the index).
            per_file: one result per file, its best segment, with the file's other segments that ranked in `others`
                (best first); `False` lists segments alone. An index of whole files has one segment per file, so
                both give the same list.

        Returns:
            For a single caption a list of [`SearchResult`], best first; otherwise one such list per query.
        """
        single = isinstance(queries, str)
        if isinstance(queries, torch.Tensor):
            text_embeds = queries if queries.dim() == 2 else queries[None]
        else:
            text_embeds = self.encode_text([queries] if single else list(queries))
        results = [self._ranked(row, k, exact, shortlist_size, per_file) for row in text_embeds]
        return results[0] if single else results

    def _ranked(self, text_embed: torch.Tensor, k: int, exact: bool, shortlist_size: int | None,
                per_file: bool) -> list[SearchResult]:
        """The results of one query. Grouped per file, the best `OTHERS_WINDOW × k` segments are grouped (so a file
        lists its other good segments), widened until they cover `k` files."""
        wanted = k * OTHERS_WINDOW if per_file else k
        while True:
            scores, positions = self.search_embeddings(text_embed[None], min(wanted, len(self)), exact,
                                                       shortlist_size)
            hits = [self._result(p, s) for s, p in zip(scores[0].tolist(), positions[0].tolist()) if p >= 0]
            if not per_file:
                return hits
            grouped: dict[str, SearchResult] = {}
            for hit in hits:
                if hit.path in grouped:
                    grouped[hit.path].others.append(hit)
                else:
                    grouped[hit.path] = hit
            if len(grouped) >= k or wanted >= len(self):
                return list(grouped.values())[:k]
            wanted *= 4

    def _result(self, position: int, score: float) -> SearchResult:
        entry = self.entries[position]
        return SearchResult(entry["path"], score, position, entry.get("start"), entry.get("end"))

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
        """Write the index folder atomically: a marked staging sibling renamed into place. An existing folder is
        replaced only if it is an index this package wrote; marked leftovers of a killed save are removed first."""
        write_index_folder(self, path)

    # `VideoIndex.read_metadata(path)`: the validated `index.json`, without loading the embeddings.
    read_metadata = staticmethod(read_metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, model: AvigateModel | None = None, processor=None, force: bool = False,
             verify: bool = True) -> "VideoIndex":
        """Read an index folder.

        Args:
            path: the folder written by [`save`](VideoIndex.save).
            model, processor: attach them for text queries; refused if they did not build the index (see
                [`check_model`](VideoIndex.check_model)) unless `force=True`.
            verify: check the SHA-256 of every data file (reads each file once more; turn off for huge indexes
                on trusted storage). Sizes, dimensions and the first-stage kind are checked either way.

        Raises:
            FileNotFoundError: no index at `path`.
            CorruptIndexError: a file is missing, truncated, altered or inconsistent with `index.json`.
            OutdatedIndexError: the index was written in an older format (rebuild it).
            IncompatibleModelError: `model` differs from the one that built the index.
        """
        path = os.fspath(path)
        index = cls(**read_index_folder(path, read_metadata(path), verify))
        if model is not None:
            index.attach(model, processor, force=force)
        return index
