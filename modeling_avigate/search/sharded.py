# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Build or update and save an index with every process of an `accelerate launch` / `torchrun` job (one process works
too).

Several processes share the work in pieces: a piece is a file, or a contiguous range of a long file's segments, so a
two-hour film is cut across the processes instead of stalling one of them. The main process plans the update
([`plan_update`]: the files that are new or changed, as [`VideoIndex.add`] finds them, and each process's share of
pieces), writes the plan to `OUTPUT.shards/plan.json`; every process embeds its share into a shard there
([`embed_share`]); the main process merges the shards into the index ([`finish_update`]) and saves it.
"""

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..embedding import EmbeddingOptions
from ..folders import check_output_separate, check_replaceable, remove_owned_folder, write_marker
from ..media_files import resolve_videos
from ..modeling_avigate import AvigateModel
from ..processors import probe_duration, segment_count
from .first_stage import FirstStage
from .metadata import INDEX_KIND, METADATA_FILE, SHARDS_KIND
from .store import VideoIndex


PLAN_FILE = "plan.json"
# A piece: (file, first segment, stop segment or None for "to the file's end").
Piece = tuple[str, int, int | None]


def shards_path(output_dir: str | os.PathLike) -> str:
    """The folder where the processes of a sharded build leave their shards: `OUTPUT.shards` beside the output."""
    return os.path.abspath(os.fspath(output_dir)) + ".shards"


def check_index_output(output_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse, before any video is embedded, an index folder (or its shards folder) that is, sits inside or contains
    one of `inputs` (the video folder, or the video files), or that would replace a folder which is not an index."""
    for folder, kind in ((os.fspath(output_dir), INDEX_KIND), (shards_path(output_dir), SHARDS_KIND)):
        check_output_separate(folder, inputs, what="index folder")
        check_replaceable(folder, kind)


def _create_shards_folder(shard_dir: str) -> None:
    remove_owned_folder(shard_dir, SHARDS_KIND)  # the marked leftover of a killed build, or nothing
    os.makedirs(shard_dir)
    write_marker(shard_dir, SHARDS_KIND)


@dataclass
class ShardPlan:
    """What the processes of a sharded build embed.

    Attributes:
        files: the files to embed, in the order a single process would embed them.
        signatures: the signature each file had when the run began (stored with its entries).
        shares: per process, its pieces `(file, first segment, stop segment)` (a stop of `None`: to the file's end).
    """

    files: list[str]
    signatures: dict[str, dict[str, Any]]
    shares: list[list[Piece]]

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle)

    @classmethod
    def load(cls, path: str) -> "ShardPlan":
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
        return cls(plan["files"], plan["signatures"], [[tuple(piece) for piece in share] for share in plan["shares"]])


def segment_counts(paths: Sequence[str], options: EmbeddingOptions) -> dict[str, int]:
    """How many segments `options` will cut each file into, from the length its container header declares
    ([`probe_duration`]); 1 for whole files (nothing is opened then) and for a header without a length."""
    if options.segment_seconds is None:
        return dict.fromkeys(paths, 1)
    counts = {}
    for path in paths:
        duration = probe_duration(path)
        counts[path] = 1 if duration is None else segment_count(duration, options.segment_seconds,
                                                                 options.stride_seconds)
    return counts


def plan_shares(counts: dict[str, int], num_shares: int) -> list[list[Piece]]:
    """Deal the segments of the files `counts` (file → segment count, in file order) to `num_shares` processes, each
    getting the same number of segments (to one).

    Files are taken longest first and fill the processes in turn, each up to its share of the total; a file that
    does not fit is cut there and goes on in the next process. So a long file becomes contiguous pieces on
    consecutive processes (one piece per process: each opens a file once), at most `num_shares - 1` files are cut,
    and short files, coming last, rarely are. A file's last piece runs to its end, so a count that misjudged the
    length changes only the balance. Each share lists its pieces in file order.

    Example:

    ```python
    >>> plan_shares({"film.mp4": 720, "a.mp4": 1, "b.mp4": 3}, 2)
    [[('film.mp4', 0, 362)], [('film.mp4', 362, None), ('a.mp4', 0, None), ('b.mp4', 0, None)]]
    ```
    """
    total = sum(counts.values())
    filled_up_to = [math.ceil(total * (rank + 1) / num_shares) for rank in range(num_shares)]
    shares: list[list[Piece]] = [[] for _ in range(num_shares)]
    rank, filled = 0, 0
    for path in sorted(counts, key=lambda path: -counts[path]):
        first = 0
        while first < counts[path]:
            while rank < num_shares - 1 and filled >= filled_up_to[rank]:
                rank += 1
            take = counts[path] - first if rank == num_shares - 1 else min(counts[path] - first,
                                                                           filled_up_to[rank] - filled)
            stop = first + take
            shares[rank].append((path, first, None if stop == counts[path] else stop))
            first, filled = stop, filled + take
    order = {path: i for i, path in enumerate(counts)}
    return [sorted(share, key=lambda piece: order[piece[0]]) for share in shares]


def plan_update(index: VideoIndex, videos, options: EmbeddingOptions, prune: bool, num_shares: int) -> ShardPlan:
    """The main process's plan: [`VideoIndex.start_update`] (new and changed files; their old segments, and with
    `prune` those of deleted files, leave `index`), then the files' segments dealt to `num_shares` processes."""
    files, signatures = index.start_update(videos, options, prune)
    return ShardPlan(files, signatures, plan_shares(segment_counts(files, options), num_shares))


def embed_share(model: AvigateModel, processor, plan: ShardPlan, rank: int,
                options: EmbeddingOptions = EmbeddingOptions()) -> VideoIndex:
    """The shard of process `rank`: its pieces of `plan` embedded, each file opened once."""
    share = plan.shares[rank]
    shard = VideoIndex.empty(model, processor, options)
    shard.embed([path for path, _, _ in share], plan.signatures, options,
                segments={path: slice(first, stop) for path, first, stop in share})
    return shard


def finish_update(index: VideoIndex, shards: Sequence[VideoIndex], plan: ShardPlan) -> None:
    """Merge the processes' shards in single-process order and append them to `index` (which [`plan_update`]
    prepared): the result equals what [`VideoIndex.add`] in one process gives."""
    index.extend(VideoIndex.merge(shards, order=plan.files))


def _existing_index(output_dir: str, model: AvigateModel, processor) -> VideoIndex | None:
    """The index already at `output_dir` (to update), with `model` attached; `None` when there is none."""
    if not os.path.isfile(os.path.join(output_dir, METADATA_FILE)):
        return None
    return VideoIndex.load(output_dir, model=model, processor=processor)


def build_sharded(
    model: AvigateModel,
    processor,
    videos,
    output_dir: str | os.PathLike,
    options: EmbeddingOptions = EmbeddingOptions(),
    first_stage: FirstStage | None = None,
    shortlist_size: int = 256,
    prune: bool = False,
    checkpoint_seconds: float = 60.0,
) -> VideoIndex | None:
    """Build or update and save an index with every process of an `accelerate launch` / `torchrun` job (one process
    works too). The output and its marked shards folder are checked first ([`check_index_output`]). `videos` is a
    folder, a list of paths or a `datasets.Dataset` with a `video` column; `options` apply to every process (the
    progress bar is shown by the main process of each machine only).

    An index already at `output_dir` is updated as [`VideoIndex.add`] does it: only new or changed files are
    embedded, unchanged entries are kept, and `prune` drops files that no longer exist. One process saves every
    `checkpoint_seconds`, so a killed run loses at most the files since the last save. Several processes each embed a
    share of the pieces ([`plan_shares`]: files, long files cut by segments) into `OUTPUT.shards/`, and the main
    process merges them in single-process order (a killed run leaves the previous index as it was). The main process
    then builds the first stage and saves `output_dir`.

    Returns the saved index on the main process, `None` on the others.
    """
    import torch
    from accelerate import PartialState

    # Without CUDA, accelerate joins the processes of a torchrun / accelerate launch job (gloo) only when asked for
    # the CPU; otherwise every process would believe it is alone and build (and save) the whole index.
    state = PartialState(cpu=not torch.cuda.is_available())
    paths = resolve_videos(videos)
    output_dir = os.path.abspath(os.fspath(output_dir))
    check_index_output(output_dir, [videos] if isinstance(videos, (str, os.PathLike)) else paths)
    model.to(state.device)
    shard_dir = shards_path(output_dir)
    index = None
    if state.is_main_process:
        index = _existing_index(output_dir, model, processor) or VideoIndex.empty(model, processor, options)
    if state.num_processes == 1:
        remove_owned_folder(shard_dir, SHARDS_KIND)  # the marked leftover of a killed multi-process build, if any
        index.add(paths, options, prune=prune, checkpoint=lambda current: current.save(output_dir),
                  checkpoint_seconds=checkpoint_seconds)
    else:
        if state.is_main_process:
            _create_shards_folder(shard_dir)
            plan_update(index, paths, options, prune, state.num_processes).save(os.path.join(shard_dir, PLAN_FILE))
        state.wait_for_everyone()
        plan = ShardPlan.load(os.path.join(shard_dir, PLAN_FILE))
        shard = embed_share(model, processor, plan, state.process_index,
                            replace(options, progress=options.progress and state.is_local_main_process))
        shard.save(os.path.join(shard_dir, f"shard-{state.process_index:05d}"))
        state.wait_for_everyone()
        if state.is_main_process:
            finish_update(index, [VideoIndex.load(os.path.join(shard_dir, f"shard-{rank:05d}"))
                                  for rank in range(state.num_processes)], plan)
            remove_owned_folder(shard_dir, SHARDS_KIND)
    if index is not None:
        if first_stage is not None and (index.info["first_stage"] or {}).get("kind") != first_stage:
            index.build_first_stage(first_stage, shortlist_size)
        index.save(output_dir)
    state.wait_for_everyone()
    return index
