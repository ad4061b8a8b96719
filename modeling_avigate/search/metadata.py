# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The index folder's format: file names, the `index.json` schema and its validation, and the index's errors.

`index.json` carries the SHA-256 of its own content (`metadata_sha256`, [`metadata_checksum`]), so an edit made
after the index was written (say, a video path pointed at `/etc/passwd`) is refused like a damaged data file. Every
key is then checked for presence and type before anything else is read, so a damaged file gives one
[`CorruptIndexError`] line naming the key instead of a `KeyError` traceback or a silently wrong search; every video
path must name a video file (and is served only while the file still matches its recorded signature, see
`VideoIndex.video_file`).
"""

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from ..fingerprints import sha256_file
from ..folders import recover_interrupted_replace
from ..media_files import is_video_file
from .first_stage import FIRST_STAGE_KINDS


# 2: previews.safetensors (posters, frame times, audio gates) added. 3: entries are segments (file, start, end) with
# the file's signature; `segments` records how files are cut. Older formats are refused with a line saying to
# rebuild (no migration: the package is at 0.x).
FORMAT_VERSION = 3
INDEX_KIND = "index"
SHARDS_KIND = "index_shards"
METADATA_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
FIRST_STAGE_FILE = "first_stage.faiss"
PREVIEWS_FILE = "previews.safetensors"
METADATA_CHECKSUM_KEY = "metadata_sha256"
# The only files an index reads: a checksum entry naming anything else (say `../../secret`) is refused.
DATA_FILES = (EMBEDDINGS_FILE, FIRST_STAGE_FILE, PREVIEWS_FILE)


class CorruptIndexError(ValueError):
    """An index folder is incomplete, truncated or altered since it was written."""


class IncompatibleModelError(ValueError):
    """The model (or processor) used for queries is not the one that built the index."""


class OutdatedIndexError(ValueError):
    """The index was written by an older version of the package in an older format; rebuild it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_list_of_dicts_with(*keys: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(item, dict) and all(isinstance(item.get(key), str) for key in keys) for item in value)
    return check


def _is_span(item: dict[str, Any]) -> bool:
    start, end = item.get("start"), item.get("end")
    return (start is None and end is None) or (_is_number(start) and _is_number(end) and start <= end)


def _is_video_list(value: Any) -> bool:
    return _is_list_of_dicts_with("path")(value) and all(
        is_video_file(item["path"]) and "\0" not in item["path"] and _is_span(item) for item in value)


def _is_segments(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"segment_seconds", "stride_seconds"}
            and all(item is None or (_is_number(item) and item > 0) for item in value.values()))


def _is_model(value: Any) -> bool:
    # The model reference and fingerprints are optional (an index built from raw embeddings has none), strings if set.
    return (isinstance(value, dict) and _is_number(value.get("logit_scale"))
            and _is_number(value.get("lse_temperature"))
            and all(isinstance(value.get(key), (str, type(None)))
                    for key in ("name_or_path", "revision", "config_hash", "weights_fingerprint")))


def _is_first_stage(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and value.get("kind") in FIRST_STAGE_KINDS
                             and _is_int(value.get("shortlist_size")) and value["shortlist_size"] > 0
                             and all(_is_int(value[key]) and value[key] > 0
                                     for key in ("nprobe", "nlist", "refine_factor") if key in value))


def _is_checksums(value: Any) -> bool:
    return (isinstance(value, dict) and EMBEDDINGS_FILE in value
            and all(name in DATA_FILES and isinstance(digest, str) for name, digest in value.items()))


# key → (check, what the key must be)
SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_videos": (_is_count, "a non-negative integer"),
    "num_frames": (_is_count, "a non-negative integer"),
    "dim": (_is_count, "a non-negative integer"),
    "model": (_is_model, "an object with numeric logit_scale and lse_temperature (and string name_or_path, "
                         "revision, config_hash, weights_fingerprint where set)"),
    "processor": (lambda value: value is None or isinstance(value, dict), "an object or null"),
    "first_stage": (_is_first_stage, f"null or an object with kind in {FIRST_STAGE_KINDS}, a positive "
                                     "shortlist_size (and positive integer nprobe, nlist, refine_factor where set)"),
    "checksums": (_is_checksums, f"an object of SHA-256 strings for {EMBEDDINGS_FILE} (and {FIRST_STAGE_FILE}, "
                                 f"{PREVIEWS_FILE} only)"),
    "segments": (_is_segments, "an object with segment_seconds and stride_seconds (positive numbers or null)"),
    "videos": (_is_video_list, "a list of objects whose path names a video file, with a start <= end in seconds "
                               "(or both null)"),
    "failures": (_is_list_of_dicts_with("path", "error"), "a list of objects with string path and error"),
}


def metadata_checksum(metadata: dict[str, Any]) -> str:
    """SHA-256 of a parsed `index.json` without its own checksum key, over a canonical JSON form (sorted keys, no
    spaces), so it does not depend on how the file was indented."""
    content = {key: value for key, value in metadata.items() if key != METADATA_CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate_metadata(metadata: Any, metadata_path: str) -> None:
    """Raise [`CorruptIndexError`] naming the first missing or ill-typed key of a parsed `index.json`, or
    [`OutdatedIndexError`] for an older format."""
    if not isinstance(metadata, dict):
        raise CorruptIndexError(f"{metadata_path} holds a {type(metadata).__name__}, not an object; the index is "
                                "corrupt")
    version = metadata.get("format_version")
    folder = os.path.dirname(metadata_path)
    if _is_int(version) and 0 < version < FORMAT_VERSION:
        raise OutdatedIndexError(f"{folder} is an index of format {version}, written by an older version of "
                                 f"modeling_avigate (this one reads format {FORMAT_VERSION}); rebuild it with "
                                 "'avigate index'")
    if not (_is_int(version) and version == FORMAT_VERSION):
        raise CorruptIndexError(f"{metadata_path}: unsupported index format {version!r} "
                                f"(this version reads {FORMAT_VERSION})")
    if metadata.get(METADATA_CHECKSUM_KEY) != metadata_checksum(metadata):
        raise CorruptIndexError(f"{metadata_path} was changed after the index was written (it does not match its "
                                f"{METADATA_CHECKSUM_KEY}); rebuild the index")
    for key, (check, expected) in SCHEMA.items():
        if key not in metadata:
            raise CorruptIndexError(f"{metadata_path}: key {key!r} is missing; the index is corrupt, rebuild it")
        if not check(metadata[key]):
            raise CorruptIndexError(f"{metadata_path}: key {key!r} must be {expected}, got "
                                    f"{json.dumps(metadata[key])[:80]}; the index is corrupt, rebuild it")
    if len(metadata["videos"]) != metadata["num_videos"]:
        raise CorruptIndexError(f"{metadata_path}: {len(metadata['videos'])} videos listed but num_videos is "
                                f"{metadata['num_videos']}; the index is corrupt, rebuild it")
    if metadata["first_stage"] is not None and FIRST_STAGE_FILE not in metadata["checksums"]:
        raise CorruptIndexError(f"{metadata_path}: a {metadata['first_stage']['kind']} first stage is recorded but "
                                f"{FIRST_STAGE_FILE} has no checksum; the index is corrupt, rebuild it")
    if PREVIEWS_FILE not in metadata["checksums"]:
        raise CorruptIndexError(f"{metadata_path}: {PREVIEWS_FILE} has no checksum; the index is corrupt, rebuild it")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed and validated `index.json` of an index folder, without loading the embeddings. A save killed
    while swapping folders is rolled back first. An older format raises [`OutdatedIndexError`]."""
    path = os.fspath(path)
    recover_interrupted_replace(path)
    metadata_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"no AVIGATE index at {path} ({METADATA_FILE} not found)")
    try:
        with open(metadata_path, encoding="utf-8") as handle:
            metadata = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: nested too deep
        raise CorruptIndexError(f"{metadata_path} is not valid JSON ({error}); the index is corrupt") from error
    validate_metadata(metadata, metadata_path)
    return metadata


def check_data_files(path: str, metadata: dict[str, Any], verify: bool = True) -> None:
    """Raise [`CorruptIndexError`] if a data file that `index.json` (the validated `metadata`) lists is missing from
    folder `path`, or, when `verify`, no longer matches its SHA-256."""
    for name, expected in metadata["checksums"].items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise CorruptIndexError(f"{file} is missing; the index is incomplete")
        if verify and sha256_file(file) != expected:
            raise CorruptIndexError(f"{file} does not match its checksum in {METADATA_FILE} (corrupt or truncated); "
                                    "rebuild the index")


__all__ = [
    "METADATA_CHECKSUM_KEY",
    "CorruptIndexError",
    "FORMAT_VERSION",
    "IncompatibleModelError",
    "OutdatedIndexError",
    "PREVIEWS_FILE",
    "check_data_files",
    "metadata_checksum",
    "read_metadata",
    "validate_metadata",
]
