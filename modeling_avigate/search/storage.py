# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Writing and reading a [`VideoIndex`] folder: `embeddings.safetensors`, `previews.safetensors`, the optional faiss
first stage and `index.json` (whose schema and checks live in `metadata`), each data file checked against the sizes
and checksums `index.json` records."""

import json
import os
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..fingerprints import sha256_file
from ..folders import atomic_folder
from .first_stage import first_stage_mismatches, require_faiss
from .metadata import (
    EMBEDDINGS_FILE,
    FIRST_STAGE_FILE,
    FORMAT_VERSION,
    INDEX_KIND,
    METADATA_CHECKSUM_KEY,
    METADATA_FILE,
    PREVIEWS_FILE,
    CorruptIndexError,
    check_data_files,
    metadata_checksum,
)
from .previews import VideoPreviews


if TYPE_CHECKING:
    from .store import VideoIndex


def write_index_folder(index: "VideoIndex", path: str | os.PathLike) -> None:
    """Write the folder of `index` atomically: a marked staging sibling renamed into place. An existing folder is
    replaced only if it is an index this package wrote; marked leftovers of a killed save are removed first."""
    with atomic_folder(path, INDEX_KIND, FORMAT_VERSION) as staging:
        embeddings = os.path.join(staging, EMBEDDINGS_FILE)
        save_file({
            "frame_embeds": index.frame_embeds.contiguous(),
            "video_mask": index.video_mask.to(torch.uint8).contiguous(),
            "video_embeds": index.video_embeds.contiguous(),
            "has_audio": index.has_audio.to(torch.uint8).contiguous(),
        }, embeddings)
        previews = os.path.join(staging, PREVIEWS_FILE)
        index.previews.save(previews)
        checksums = {EMBEDDINGS_FILE: sha256_file(embeddings), PREVIEWS_FILE: sha256_file(previews)}
        if index.first_stage is not None:
            require_faiss().write_index(index.first_stage, os.path.join(staging, FIRST_STAGE_FILE))
            checksums[FIRST_STAGE_FILE] = sha256_file(os.path.join(staging, FIRST_STAGE_FILE))
        metadata = {
            "format_version": FORMAT_VERSION,
            "num_videos": len(index),
            "num_frames": index.frame_embeds.shape[1],
            "dim": index.frame_embeds.shape[2],
            **index.info,
            "checksums": checksums,
            "videos": index.entries,
            "failures": index.failures,
        }
        metadata[METADATA_CHECKSUM_KEY] = metadata_checksum(metadata)
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=1)


def read_index_folder(path: str, metadata: dict[str, Any], verify: bool) -> dict[str, Any]:
    """The `VideoIndex` constructor arguments of the index in folder `path` whose validated `index.json` is
    `metadata`."""
    check_data_files(path, metadata, verify)
    tensors = read_embeddings(os.path.join(path, EMBEDDINGS_FILE), metadata)
    first_stage = None
    if metadata["first_stage"] is not None:
        first_stage = read_first_stage(os.path.join(path, FIRST_STAGE_FILE), metadata)
    previews = read_previews(os.path.join(path, PREVIEWS_FILE), metadata)
    info = {key: metadata[key] for key in ("model", "processor", "first_stage", "segments")}
    return {"entries": metadata["videos"], "frame_embeds": tensors["frame_embeds"],
            "video_mask": tensors["video_mask"], "has_audio": tensors["has_audio"], "info": info,
            "failures": metadata["failures"], "video_embeds": tensors["video_embeds"], "first_stage": first_stage,
            "previews": previews}


def read_embeddings(file: str, metadata: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of `embeddings.safetensors`, each checked against the sizes `index.json` records."""
    try:
        tensors = load_file(file)
    except (SafetensorError, OSError) as error:
        raise CorruptIndexError(f"{file} cannot be read ({error}); rebuild the index") from error
    num_videos, num_frames, dim = metadata["num_videos"], metadata["num_frames"], metadata["dim"]
    expected = {"frame_embeds": (num_videos, num_frames, dim), "video_mask": (num_videos, num_frames),
                "video_embeds": (num_videos, dim), "has_audio": (num_videos,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise CorruptIndexError(f"{file} has no {name!r} tensor; rebuild the index")
        if tuple(tensors[name].shape) != shape:
            raise CorruptIndexError(f"{file} holds {name} of shape {tuple(tensors[name].shape)}, {METADATA_FILE} "
                                    f"describes {shape}; rebuild the index")
    return tensors


def read_previews(file: str, metadata: dict[str, Any]) -> VideoPreviews:
    """The previews of `previews.safetensors`, checked against the video and frame counts `index.json` records."""
    try:
        previews = VideoPreviews.load(file)
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise CorruptIndexError(f"{file} cannot be read ({error!r}); rebuild the index") from error
    shape = (metadata["num_videos"], metadata["num_frames"])
    if len(previews) != shape[0] or tuple(previews.frame_times.shape) != shape:
        raise CorruptIndexError(f"{file} holds previews of {len(previews)} videos with frame times of shape "
                                f"{tuple(previews.frame_times.shape)}, {METADATA_FILE} describes {shape}; rebuild the "
                                "index")
    return previews


def read_first_stage(file: str, metadata: dict[str, Any]):
    """The faiss first stage, checked against the kind, vector count and dimension `index.json` records."""
    try:
        first_stage = require_faiss().read_index(file)
    except RuntimeError as error:
        # faiss' message is a C++ location plus the reason; the reason is the last sentence.
        reason = str(error).splitlines()[0].rsplit(": ", 1)[-1]
        raise CorruptIndexError(f"{file} is not a readable faiss index ({reason}); rebuild the index") from error
    problems = first_stage_mismatches(first_stage, metadata["first_stage"]["kind"], metadata["num_videos"],
                                      metadata["dim"])
    if problems:
        raise CorruptIndexError(f"{file} does not match {METADATA_FILE}: {'; '.join(problems)}; rebuild the index")
    return first_stage
