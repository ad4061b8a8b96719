# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Build and save an index with every process of an `accelerate launch` / `torchrun` job (one process works too)."""

import os
from collections.abc import Sequence
from dataclasses import replace

from ..embedding import EmbeddingOptions
from ..folders import check_output_separate, check_replaceable, remove_owned_folder, write_marker
from ..media_files import resolve_videos
from ..modeling_avigate import AvigateModel
from .first_stage import FirstStage
from .metadata import INDEX_KIND, METADATA_FILE, SHARDS_KIND
from .store import VideoIndex


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


def balanced_shares(paths: Sequence[str], num_shares: int) -> list[list[str]]:
    """Deal files to `num_shares` processes so each gets about the same number of bytes (a proxy for segments: a
    two-hour film weighs as much as many short clips), largest first, each share then in the given order."""
    sizes = {path: os.path.getsize(path) if os.path.isfile(path) else 0 for path in paths}
    loads, shares = [0] * num_shares, [[] for _ in range(num_shares)]
    for path in sorted(paths, key=lambda path: -sizes[path]):
        lightest = loads.index(min(loads))
        shares[lightest].append(path)
        loads[lightest] += sizes[path]
    rank = {path: i for i, path in enumerate(paths)}
    return [sorted(share, key=rank.__getitem__) for share in shares]


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

    One process updates an index already at `output_dir` ([`VideoIndex.add`]: only new or changed files are
    embedded; `prune` drops files that no longer exist) and saves it every `checkpoint_seconds`, so a killed run
    loses at most the files since the last save. Several processes build afresh: each embeds a share of the files
    balanced by size ([`balanced_shares`]) and writes it to `OUTPUT.shards/`; the main process merges the shards in
    the single-process order, builds the first stage and saves `output_dir`.

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
    if state.num_processes == 1:
        remove_owned_folder(shard_dir, SHARDS_KIND)  # the marked leftover of a killed multi-process build, if any
        merged = _existing_index(output_dir, model, processor) or VideoIndex.empty(model, processor, options)
        merged.add(paths, options, prune=prune, checkpoint=lambda index: index.save(output_dir),
                   checkpoint_seconds=checkpoint_seconds)
    else:
        shard = VideoIndex.empty(model, processor, options)
        shard.add(balanced_shares(paths, state.num_processes)[state.process_index],
                  replace(options, progress=options.progress and state.is_local_main_process))
        if state.is_main_process:
            _create_shards_folder(shard_dir)
        state.wait_for_everyone()
        shard.save(os.path.join(shard_dir, f"shard-{state.process_index:05d}"))
        state.wait_for_everyone()
        merged = None
        if state.is_main_process:
            shards = [VideoIndex.load(os.path.join(shard_dir, f"shard-{rank:05d}"))
                      for rank in range(state.num_processes)]
            merged = VideoIndex.merge(shards, order=paths)
            remove_owned_folder(shard_dir, SHARDS_KIND)
    if merged is not None:
        merged.attach(model, processor)
        if first_stage is not None and (merged.info["first_stage"] or {}).get("kind") != first_stage:
            merged.build_first_stage(first_stage, shortlist_size)
        merged.save(output_dir)
    state.wait_for_everyone()
    return merged
