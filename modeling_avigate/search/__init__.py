# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Search your own videos with AVIGATE: embed a gallery once, then every text query is one text encoding plus a scan.

AVIGATE's audio-visual fusion does not depend on the query, so [`VideoIndex`] stores each video's fused,
L2-normalised frame embeddings (fp16), frame mask, global embedding and `has_audio` flag, and ranks videos with the
model's own multi-grained score (what `AvigateModel.similarity` computes). Large galleries can add a faiss first
stage over the global embeddings that shortlists candidates for the exact re-rank.

The package, one idea per module (none imports training or evaluation code):

- `kernels`: the exact chunked scan and the exact re-rank of a shortlist (pure tensor functions);
- `first_stage`: faiss first stages (`flat`, `pq`, `hnsw`, `ivf`): build, shortlist, check one read from disk;
- `metadata`: the folder's file names, the `index.json` schema and its validation, the index's errors;
- `previews`: [`VideoPreviews`], the poster frames, sampled-frame times and audio gates the search page shows;
- `store`: [`VideoIndex`] (build, add, merge, search, save, load) and [`SearchResult`];
- `sharded`: [`build_sharded`], the multi-process build behind `avigate index`.

On disk an index is a folder marked as this package's `index` folder (`.avigate-folder.json`):

- `index.json`: format version, sizes, one entry per video (absolute path, duration), the model (absolute folder or
  Hub id, revision, config hash, weights fingerprint, logit scale), the processor settings, the first-stage mode,
  skipped files with their reasons, and the SHA-256 of every data file;
- `embeddings.safetensors`: `frame_embeds` fp16 `[N, T, D]`, `video_mask` uint8 `[N, T]`, `video_embeds` fp32
  `[N, D]`, `has_audio` uint8 `[N]`;
- `first_stage.faiss` when a first stage was built;
- `previews.safetensors`: poster frames, sampled-frame times and audio gates for the search page (`avigate serve`).

An index of an older format raises [`OutdatedIndexError`], one line asking to rebuild it.

Example:

```python
>>> from modeling_avigate import AvigateModel, VideoIndex
>>> from modeling_avigate.processors import AvigateProcessor
>>> model = AvigateModel.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
>>> processor = AvigateProcessor.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
>>> from modeling_avigate.embedding import EmbeddingOptions
>>> index = VideoIndex.build(model, processor, "my_videos/", EmbeddingOptions(num_workers=2))  # doctest: +SKIP
>>> index.save("my_videos.avigate")  # doctest: +SKIP
>>> index = VideoIndex.load("my_videos.avigate", model=model, processor=processor)  # doctest: +SKIP
>>> index.search("a dog barks at a car", k=5)[0].path  # doctest: +SKIP
'my_videos/dog.mp4'
```
"""

import importlib
from typing import TYPE_CHECKING, Any


# Public name → the module that defines it, imported on first access (PEP 562): `avigate info` reads an index's
# format (`metadata`) without importing torch, which the search itself needs.
_EXPORTS = {
    "FIRST_STAGE_KINDS": "first_stage",
    "FirstStage": "first_stage",
    "build_first_stage": "first_stage",
    "first_stage_kind": "first_stage",
    "shortlist": "first_stage",
    "SCORE_CHUNK_ELEMENTS": "kernels",
    "exact_search": "kernels",
    "rerank_candidates": "kernels",
    "FORMAT_VERSION": "metadata",
    "METADATA_FILE": "metadata",
    "PREVIEWS_FILE": "metadata",
    "CorruptIndexError": "metadata",
    "IncompatibleModelError": "metadata",
    "OutdatedIndexError": "metadata",
    "read_metadata": "metadata",
    "VideoPreviews": "previews",
    "build_sharded": "sharded",
    "check_index_output": "sharded",
    "SearchResult": "store",
    "VideoIndex": "store",
    "model_info": "store",
    "model_reference": "store",
    "processor_settings": "store",
}

if TYPE_CHECKING:
    from .first_stage import FIRST_STAGE_KINDS, FirstStage, build_first_stage, first_stage_kind, shortlist
    from .kernels import SCORE_CHUNK_ELEMENTS, exact_search, rerank_candidates
    from .metadata import (
        FORMAT_VERSION,
        METADATA_FILE,
        PREVIEWS_FILE,
        CorruptIndexError,
        IncompatibleModelError,
        OutdatedIndexError,
        read_metadata,
    )
    from .previews import VideoPreviews
    from .sharded import build_sharded, check_index_output
    from .store import SearchResult, VideoIndex, model_info, model_reference, processor_settings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = [
    "FIRST_STAGE_KINDS",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "PREVIEWS_FILE",
    "SCORE_CHUNK_ELEMENTS",
    "CorruptIndexError",
    "FirstStage",
    "IncompatibleModelError",
    "OutdatedIndexError",
    "SearchResult",
    "VideoIndex",
    "VideoPreviews",
    "build_first_stage",
    "build_sharded",
    "check_index_output",
    "exact_search",
    "first_stage_kind",
    "model_info",
    "model_reference",
    "processor_settings",
    "read_metadata",
    "rerank_candidates",
    "shortlist",
]
