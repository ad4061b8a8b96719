# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Where the search index used to live: `from modeling_avigate.index import VideoIndex` (and the names below) keeps
working for code written against it. The implementation is the `modeling_avigate.search` package; new code imports
from there, or `VideoIndex` / `SearchResult` from `modeling_avigate` directly."""

from .fingerprints import config_hash, weights_fingerprint
from .media_files import VIDEO_EXTENSIONS, resolve_videos
from .search import (
    CorruptIndexError,
    FirstStage,
    IncompatibleModelError,
    SearchResult,
    VideoIndex,
    build_first_stage,
    build_sharded,
    exact_search,
    model_info,
    processor_settings,
    rerank_candidates,
    shortlist,
)


__all__ = [
    "VIDEO_EXTENSIONS",
    "CorruptIndexError",
    "FirstStage",
    "IncompatibleModelError",
    "SearchResult",
    "VideoIndex",
    "build_first_stage",
    "build_sharded",
    "config_hash",
    "exact_search",
    "model_info",
    "processor_settings",
    "rerank_candidates",
    "resolve_videos",
    "shortlist",
    "weights_fingerprint",
]
