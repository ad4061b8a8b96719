# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""How a [`VideoIndex`] changes: [`IndexUpdates`] brings it up to date with a video collection (embedding new and
changed files, dropping removed ones) and joins indexes (the shards of a sharded build)."""

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..embedding import EmbeddedFile, EmbeddingOptions, embed_files
from ..fingerprints import file_signature
from ..media_files import resolve_videos
from ..modeling_avigate import pool_video_embeds
from .first_stage import first_stage_vectors
from .metadata import IncompatibleModelError
from .previews import VideoPreviews, encode_poster


if TYPE_CHECKING:
    from .store import VideoIndex


def segment_settings(options: EmbeddingOptions) -> dict[str, float | None]:
    """How an index cuts files into segments, as it records them: a later `add` must cut the same way."""
    stride = options.stride_seconds if options.segment_seconds is not None else None
    return {"segment_seconds": options.segment_seconds, "stride_seconds": stride or options.segment_seconds}


def _file_rows(embedded: EmbeddedFile, signature: dict[str, Any]) -> list[dict[str, Any]]:
    """The index entries of a file's segments: the file, the span, the file's duration and signature."""
    return [{"path": embedded.path, "start": float(start), "end": float(end), "duration": embedded.duration,
             **signature} for start, end in zip(embedded.starts.tolist(), embedded.ends.tolist())]


def _unchanged(entry: dict[str, Any], signature: dict[str, Any]) -> bool:
    return bool(signature) and all(entry.get(key) == signature[key] for key in ("size", "mtime_ns", "header_sha256"))


class IndexUpdates:
    """The methods of [`VideoIndex`] that add, replace and remove its segments, and join indexes; mixed into
    `VideoIndex`, whose state (`entries`, the tensors, `previews`, `failures`, `first_stage`, `info`) they change."""

    def add(
        self,
        videos,
        options: EmbeddingOptions = EmbeddingOptions(),
        prune: bool = False,
        checkpoint: Callable[["VideoIndex"], None] | None = None,
        checkpoint_seconds: float = 60.0,
    ) -> list[str]:
        """Bring the index up to date with `videos`: embed the files that are new or changed since they were indexed
        (size, modification time or header hash differ; their old segments are replaced) and the files that failed
        before; leave unchanged files as they are. Returns the files it embedded.

        Args:
            videos: a folder, a list of paths or a `datasets.Dataset` with a `video` column.
            options: as for [`build`](VideoIndex.build); its segment settings must be the index's.
            prune: also drop the segments of indexed files that no longer exist (never done otherwise).
            checkpoint: called with the index every `checkpoint_seconds` while files are embedded (after a file is
                complete), e.g. `index.save`: a run killed midway then loses at most the files since the last
                checkpoint, and rerunning `add` embeds only what is missing. Save the index after `add` returns.
        """
        self._require_model()  # before anything is dropped
        todo, signatures = self.start_update(videos, options, prune)
        return self.embed(todo, signatures, options, checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds)

    def start_update(self, videos, options: EmbeddingOptions = EmbeddingOptions(),
                     prune: bool = False) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """The first half of [`add`](VideoIndex.add): which files of `videos` must be embedded (new, changed or
        failed before), each with the signature it has now; their old segments and failures are dropped, and with
        `prune` the segments of files that no longer exist. Returns `(files, signatures)` for
        [`embed`](VideoIndex.embed), which a sharded build runs in several processes."""
        if segment_settings(options) != self.info["segments"]:
            raise ValueError(f"the index cuts files as {self.info['segments']}, not as {segment_settings(options)}; "
                             "pass the same segment settings or build a new index")
        indexed = {entry["path"]: entry for entry in self.entries}
        signatures, todo = {}, []
        for path in resolve_videos(videos):
            signatures[path] = file_signature(path) if os.path.isfile(path) else {}
            if path not in indexed or not _unchanged(indexed[path], signatures[path]):
                todo.append(path)
        gone = [path for path in indexed if prune and not os.path.exists(path)]
        self.remove([path for path in todo if path in indexed] + gone)
        retried = set(todo)
        self.failures = [failure for failure in self.failures if failure["path"] not in retried]
        return todo, {path: signatures[path] for path in todo}

    def embed(
        self,
        paths: Sequence[str],
        signatures: dict[str, dict[str, Any]],
        options: EmbeddingOptions = EmbeddingOptions(),
        segments: dict[str, slice] | None = None,
        checkpoint: Callable[["VideoIndex"], None] | None = None,
        checkpoint_seconds: float = 60.0,
    ) -> list[str]:
        """The second half of [`add`](VideoIndex.add): embed `paths` and append their segments, each entry with its
        file's signature from `signatures`; files that cannot be used go to `failures`. `segments` limits a file to
        a contiguous slice of its segments (a sharded build's piece of a long file). Returns the files embedded."""
        model, processor = self._require_model()
        embedded, parts, last_checkpoint = [], [], time.monotonic()
        for item in embed_files(model, processor, paths, options, segments=segments):
            if isinstance(item, EmbeddedFile):
                parts.append((item, signatures[item.path]))
                embedded.append(item.path)
            else:
                self.failures.append({"path": item.path, "error": item.reason})
            if checkpoint is not None and time.monotonic() - last_checkpoint >= checkpoint_seconds:
                self._append_files(parts)
                parts, last_checkpoint = [], time.monotonic()
                checkpoint(self)
        self._append_files(parts)
        return embedded

    def _append_files(self, parts: list[tuple[EmbeddedFile, dict[str, Any]]]) -> None:
        """Append embedded files (each with the signature it had when the run began) in one concatenation."""
        if not parts:
            return
        frames = torch.cat([file.embeddings.frame_embeds for file, _ in parts]).to(torch.float16)
        mask = torch.cat([file.embeddings.video_mask for file, _ in parts])
        previews = VideoPreviews(
            [encode_poster(poster) if poster is not None else b"" for file, _ in parts for poster in file.posters],
            torch.cat([file.frame_times for file, _ in parts]),
            torch.cat([file.embeddings.attn_gates for file, _ in parts]),
        )
        self._append([row for file, signature in parts for row in _file_rows(file, signature)], frames, mask,
                     torch.cat([file.embeddings.has_audio for file, _ in parts]),
                     pool_video_embeds(frames.float(), mask), previews)

    def _append(self, entries, frame_embeds, video_mask, has_audio, video_embeds, previews: VideoPreviews) -> None:
        if frame_embeds.shape[1:] != self.frame_embeds.shape[1:]:
            raise ValueError(f"new embeddings have shape {tuple(frame_embeds.shape[1:])}, the index holds "
                             f"{tuple(self.frame_embeds.shape[1:])} (frames, dim)")
        self.entries = self.entries + list(entries)
        self.frame_embeds = torch.cat([self.frame_embeds, frame_embeds.to(torch.float16)])
        self.video_mask = torch.cat([self.video_mask, video_mask.bool()])
        self.has_audio = torch.cat([self.has_audio, has_audio.bool()])
        self.video_embeds = torch.cat([self.video_embeds, video_embeds.float()])
        self.previews = VideoPreviews.concat([self.previews, previews])
        self._float_frames = None
        if self.first_stage is not None:
            self.first_stage.add(first_stage_vectors(video_embeds.float().numpy()))

    def remove(self, paths: Sequence[str]) -> int:
        """Drop every segment of the files `paths` (absolute paths as indexed); returns how many rows went. A flat
        first stage drops their vectors; other kinds, whose ids cannot be renumbered in place, are rebuilt."""
        dropped = set(paths)
        keep = torch.tensor([entry["path"] not in dropped for entry in self.entries], dtype=torch.bool)
        removed = len(self) - int(keep.sum())
        if not removed:
            return 0
        positions = keep.nonzero().flatten()
        self.entries = [self.entries[i] for i in positions.tolist()]
        self.frame_embeds, self.video_mask = self.frame_embeds[positions], self.video_mask[positions]
        self.has_audio, self.video_embeds = self.has_audio[positions], self.video_embeds[positions]
        self.previews = self.previews.select(positions)
        self._float_frames = None
        if self.first_stage is not None:
            settings = self.info["first_stage"]
            if settings["kind"] == "flat":
                self.first_stage.remove_ids(np.ascontiguousarray((~keep).nonzero().flatten().numpy(), dtype=np.int64))
            else:
                self.build_first_stage(settings["kind"], settings["shortlist_size"], settings.get("nprobe", 32),
                                       settings.get("nlist"))
        return removed

    @classmethod
    def merge(cls, shards: Sequence["VideoIndex"], order: Sequence[str] | None = None) -> "VideoIndex":
        """One index from shards built by the same model and processor, such as the processes of a sharded build
        leave, where a long file's segments may be spread over several shards. `order` (files) sets the file order,
        e.g. the order a single-process build would have used; a file's segments are put in time order. A file that
        failed in any shard is left out whole and listed once in `failures`, as a single process that failed on it
        would have. A first stage is not merged: rebuild it on the result."""
        if not shards:
            raise ValueError("merge needs at least one shard")
        reference = shards[0].info
        for shard in shards[1:]:
            if {**shard.info, "first_stage": None} != {**reference, "first_stage": None}:
                raise IncompatibleModelError("cannot merge shards built by different models, processors or segment "
                                             "settings")
        failures = {}
        for shard in shards:
            for failure in shard.failures:
                failures.setdefault(failure["path"], failure)
        entries = [entry for shard in shards for entry in shard.entries]
        files = dict.fromkeys([*(order or []), *(entry["path"] for entry in entries)])
        rank = {path: i for i, path in enumerate(files)}
        permutation = torch.tensor(sorted(
            (i for i, entry in enumerate(entries) if entry["path"] not in failures),
            key=lambda i: (rank[entries[i]["path"]], entries[i]["start"] or 0.0),
        ), dtype=torch.long)
        return cls(
            [entries[i] for i in permutation.tolist()],
            torch.cat([shard.frame_embeds for shard in shards])[permutation],
            torch.cat([shard.video_mask for shard in shards])[permutation],
            torch.cat([shard.has_audio for shard in shards])[permutation],
            {**reference, "first_stage": None},
            sorted(failures.values(), key=lambda failure: rank.get(failure["path"], len(rank))),
            torch.cat([shard.video_embeds for shard in shards])[permutation],
            previews=VideoPreviews.concat([shard.previews for shard in shards]).select(permutation),
        )

    def extend(self, other: "VideoIndex") -> None:
        """Append the segments and failures of `other`, an index of files this one does not hold built by the same
        model and processor (the merged shards of a sharded update); a first stage takes the new vectors in."""
        if len(other):
            self._append(other.entries, other.frame_embeds, other.video_mask, other.has_audio, other.video_embeds,
                         other.previews)
        self.failures.extend(other.failures)
