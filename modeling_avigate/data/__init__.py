"""Benchmark data for AVIGATE: MSR-VTT, VATEX, Charades and the synthetic audio-visual benchmark.

Example:

```python
>>> import tempfile
>>> from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
>>> root = generate_synthetic_benchmark(tempfile.mkdtemp(), sizes={"train": 8, "test": 4})
>>> test = load_benchmark("synthetic", root, "test", view="videos")
>>> sorted(test.column_names)
['background', 'captions', 'color', 'direction', 'has_audio', 'kind', 'shape', 'sound', 'twin_id', 'video', 'video_id']
```
"""

from typing import Optional

import datasets

from .builders import (
    BUILDERS,
    CharadesBuilder,
    MsrvttBuilder,
    SyntheticBuilder,
    VatexBuilder,
    VideoTextBuilder,
    VideoTextConfig,
)
from .publish import export_benchmark_parquet, push_benchmark_to_hub
from .synthetic import KINDS, PRESETS, generate_synthetic_benchmark, synthetic_tokenizer


def load_benchmark(
    name: str,
    data_dir: str,
    split: str,
    view: str = "pairs",
    cache_dir: Optional[str] = None,
    strict: bool = False,
    scan_audio: bool = False,
    **config_kwargs,
) -> datasets.Dataset:
    """Load one split of a benchmark from a local folder as a `datasets.Dataset` of path strings and captions.

    The table is prepared once with the dataset's builder into `cache_dir` (default: the datasets cache,
    `~/.cache/huggingface/datasets`) and reused while `data_dir`'s files are unchanged.

    Args:
        name: `"msrvtt"`, `"vatex"`, `"charades"` or `"synthetic"`.
        data_dir: the folder with the benchmark's annotation files and (anywhere below it) its videos;
            see `docs/datasets.md` for each layout.
        split: `"train"` or `"test"` (`"validation"` too for the synthetic benchmark).
        view: `"pairs"` (one row per caption, for training) or `"videos"` (one row per video with its
            `captions` list, for evaluation).
        cache_dir: where the prepared Arrow tables go.
        strict: raise if an annotated video is missing instead of warning and dropping it.
        scan_audio: open every video to fill `has_audio` (otherwise `None` for the real benchmarks).
        config_kwargs: builder options, e.g. `train_split="7k"` for MSR-VTT.

    Example:

    ```python
    >>> import tempfile
    >>> from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
    >>> root = generate_synthetic_benchmark(tempfile.mkdtemp(), sizes={"train": 8, "test": 4})
    >>> pairs = load_benchmark("synthetic", root, "train")
    >>> pairs.num_rows, sorted(set(pairs["kind"]))
    (8, ['audio_informative', 'audio_noise', 'no_audio'])
    ```
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown benchmark `name` {name!r}; expected one of {sorted(BUILDERS)}")
    builder = BUILDERS[name](
        data_dir=data_dir, cache_dir=cache_dir, view=view, strict=strict, scan_audio=scan_audio, **config_kwargs
    )
    if split not in builder.SPLITS:
        raise ValueError(f"{name} has no split {split!r}; expected one of {builder.SPLITS}")
    missing = builder.missing_split_files(split)
    if missing:
        raise FileNotFoundError(f"{name} split {split!r} needs {missing} in {builder.config.data_dir!r}")
    builder.download_and_prepare()
    return builder.as_dataset(split=split)


__all__ = [
    "BUILDERS",
    "KINDS",
    "PRESETS",
    "CharadesBuilder",
    "MsrvttBuilder",
    "SyntheticBuilder",
    "VatexBuilder",
    "VideoTextBuilder",
    "VideoTextConfig",
    "export_benchmark_parquet",
    "generate_synthetic_benchmark",
    "load_benchmark",
    "push_benchmark_to_hub",
    "synthetic_tokenizer",
]
