"""Publish a prepared benchmark as Parquet so others load it with plain `datasets.load_dataset(repo_id)`.

Local paths mean nothing on another machine, so the published set is self-contained:

- config `videos` (one row per video): the builder's videos view with `video` reduced to the file name and the
  file's bytes in `video_bytes`;
- config `pairs` (one row per caption, the default): the pairs view with `video` reduced to the file name and no
  bytes (a video has up to 20 captions; join on `video_id` with the `videos` config to get its bytes).

A README with the `configs:` metadata tells `load_dataset` which files form which config and split.
Decode a published clip with PyAV straight from memory: `av.open(io.BytesIO(row["video_bytes"]))`.
"""

import os
import tempfile
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from ..folders import MARKER_FILE, atomic_folder, check_output_separate
from ..media_files import path_inside


CONFIGS = ("pairs", "videos")
EXPORT_KIND = "parquet_export"
SHARD_BYTES = 500 * 1024 * 1024  # the Hub's viewer and load_dataset work best with shards of a few hundred MB


def _confined_paths(batch: dict, data_dir: str, split: str) -> list[str]:
    """The batch's video paths, each checked to lie inside `data_dir` before any file is read: an exported file is
    shipped to others, so a path that leads elsewhere (say an annotation naming a system file) is refused."""
    return [path_inside(data_dir, os.path.relpath(path, data_dir), f"{split} video {video_id!r}")
            for path, video_id in zip(batch["video"], batch["video_id"])]


def _write_split(dataset, config_name: str, split: str, out_dir: str, data_dir: str) -> None:
    os.makedirs(os.path.join(out_dir, config_name), exist_ok=True)
    schema = dataset.features.arrow_schema
    if config_name == "videos":
        schema = schema.append(pa.field("video_bytes", pa.binary()))
    writer, shard, shard_bytes = None, 0, 0
    for batch in dataset.iter(batch_size=64):
        paths = _confined_paths(batch, data_dir, split)
        batch["video"] = [os.path.basename(path) for path in paths]
        if config_name == "videos":
            batch["video_bytes"] = []
            for path in paths:
                with open(path, "rb") as handle:
                    batch["video_bytes"].append(handle.read())
        table = pa.Table.from_pydict(batch, schema=schema)
        if writer is None or shard_bytes > SHARD_BYTES:
            if writer is not None:
                writer.close()
                shard += 1
            path = os.path.join(out_dir, config_name, f"{split}-{shard:05d}.parquet")
            writer, shard_bytes = pq.ParquetWriter(path, schema), 0
        writer.write_table(table)
        shard_bytes += table.nbytes
    if writer is not None:
        writer.close()


def _readme(name: str, splits: list[str]) -> str:
    lines = ["---", "configs:"]
    for config_name in CONFIGS:
        lines.append(f"- config_name: {config_name}")
        if config_name == "pairs":
            lines.append("  default: true")
        lines.append("  data_files:")
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {config_name}/{split}-*.parquet"]
    lines += [
        "---",
        "",
        f"# {name} for AVIGATE video-text retrieval",
        "",
        "Prepared with `modeling_avigate.data.export_benchmark_parquet`. `pairs`: one row per (video, caption);",
        "`videos`: one row per video with all `captions` and the file in `video_bytes`",
        '(decode with `av.open(io.BytesIO(row["video_bytes"]))`).',
        "",
    ]
    return "\n".join(lines)


def export_benchmark_parquet(
    name: str, data_dir: str, out_dir: str, splits: Optional[list[str]] = None, **load_kwargs
) -> str:
    """Write a benchmark's `pairs` and `videos` configs as Parquet plus a README into `out_dir`; return `out_dir`.

    Args:
        name, data_dir, load_kwargs: as for `load_benchmark` (e.g. `strict=True`, `scan_audio=True`).
        out_dir: destination folder, written atomically; an existing one is replaced only if it is an earlier
            export (its `.avigate-folder.json` marker says so), and it may not be, contain or sit inside `data_dir`.
            `load_dataset(out_dir, "videos", split="test")` reads it back.
        splits: which splits to export (default: every split the builder prepared).

    Example:

    ```python
    >>> import tempfile
    >>> from datasets import load_dataset
    >>> from modeling_avigate.data import export_benchmark_parquet, generate_synthetic_benchmark
    >>> root = generate_synthetic_benchmark(tempfile.mkdtemp(), sizes={"train": 8, "test": 4})
    >>> folder = export_benchmark_parquet("synthetic", root, tempfile.mkdtemp())
    >>> row = load_dataset(folder, "videos", split="test")[0]
    >>> row["video"].endswith(".mp4"), len(row["video_bytes"]) > 0
    (True, True)
    ```
    """
    from . import BUILDERS, load_benchmark

    if name not in BUILDERS:
        raise ValueError(f"unknown benchmark `name` {name!r}; expected one of {sorted(BUILDERS)}")
    if splits is None:
        builder = BUILDERS[name](data_dir=data_dir)
        splits = [split for split in builder.SPLITS if not builder.missing_split_files(split)]
    check_output_separate(out_dir, [data_dir], what="export folder")
    # Written to a marked staging folder and swapped in: an existing out_dir is replaced only if it is an export.
    with atomic_folder(out_dir, EXPORT_KIND) as staging:
        for split in splits:
            for config_name in CONFIGS:
                dataset = load_benchmark(name, data_dir, split, view=config_name, **load_kwargs)
                _write_split(dataset, config_name, split, staging, data_dir)
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(_readme(name, splits))
    return out_dir


def push_benchmark_to_hub(
    name: str,
    data_dir: str,
    repo_id: str,
    splits: Optional[list[str]] = None,
    private: bool = True,
    token: Optional[str] = None,
    commit_message: Optional[str] = None,
    **load_kwargs,
):
    """Export a benchmark with `export_benchmark_parquet` and upload it as a Hub dataset repo; return the commit.

    Only publish data you may redistribute: MSR-VTT, VATEX and Charades come with their own licences.

    Example (needs a Hub token and network):

    ```python
    >>> from modeling_avigate.data import push_benchmark_to_hub
    >>> push_benchmark_to_hub("synthetic", "avigate_synthetic", "user/avigate-synthetic")  # doctest: +SKIP
    >>> from datasets import load_dataset
    >>> test = load_dataset("user/avigate-synthetic", "videos", split="test")  # doctest: +SKIP
    ```
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        export_benchmark_parquet(name, data_dir, folder, splits=splits, **load_kwargs)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            ignore_patterns=[MARKER_FILE],
            commit_message=commit_message or f"Upload {name} benchmark (Parquet)",
        )
