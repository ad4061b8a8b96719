# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The one home of media file discovery: which files are videos, how a folder is searched, and how a path named by
an annotation file is confined to its data folder.

Example:

```python
>>> import os, tempfile
>>> from modeling_avigate.media_files import find_video_files
>>> folder = tempfile.mkdtemp()
>>> for name in ("b.MP4", "a.webm", "notes.txt"):
...     _ = open(os.path.join(folder, name), "wb").write(b"")
>>> [os.path.basename(path) for path in find_video_files(folder)]
['a.webm', 'b.MP4']
```
"""

import os
from collections.abc import Iterable


# In order of preference: when one stem exists with several extensions (MSR-VTT copies with both `video7.mp4` and
# `video7.webm`), the earlier extension wins.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp",
                    ".ts")


def is_video_file(name: str) -> bool:
    """Whether a file name has one of [`VIDEO_EXTENSIONS`] (case-insensitive)."""
    return name.lower().endswith(VIDEO_EXTENSIONS)


def find_video_files(folder: str | os.PathLike) -> list[str]:
    """Every video file under `folder` (recursively), sorted; `FileNotFoundError` / `ValueError` when the folder is
    missing or holds none."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"video folder not found: {folder}")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if is_video_file(name))
    if not paths:
        raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found in {folder}")
    return paths


def index_videos(data_dir: str | os.PathLike) -> dict[str, str]:
    """Map file stem -> path for every video under `data_dir`, searched recursively; when one stem exists with
    several extensions, the one listed first in [`VIDEO_EXTENSIONS`] wins (`.mp4` before `.webm`)."""
    best: dict[str, tuple[int, str]] = {}
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            stem, extension = os.path.splitext(name)
            if not is_video_file(name):
                continue
            rank = VIDEO_EXTENSIONS.index(extension.lower())
            if stem not in best or rank < best[stem][0]:
                best[stem] = (rank, os.path.join(root, name))
    return {stem: path for stem, (_, path) in best.items()}


def resolve_videos(videos) -> list[str]:
    """Absolute paths of `videos`: a folder (searched recursively, sorted), a list of paths, or a `datasets.Dataset`
    with a `video` column of paths."""
    if isinstance(videos, (str, os.PathLike)):
        paths = find_video_files(videos)
    elif hasattr(videos, "column_names"):
        if "video" not in videos.column_names:
            raise ValueError(f"the dataset needs a 'video' column of file paths; it has {videos.column_names}")
        paths = [item["path"] if isinstance(item, dict) else item for item in videos["video"]]
    elif isinstance(videos, Iterable):
        paths = [os.fspath(path) for path in videos]
    else:
        raise TypeError(f"videos must be a folder, a list of paths or a datasets.Dataset, got {type(videos).__name__}")
    return [os.path.abspath(path) for path in paths]


def path_inside(data_dir: str | os.PathLike, path: str, source: str) -> str:
    """The resolved `path` (relative to `data_dir`) when it stays inside `data_dir`; a `ValueError` naming `source`
    (the annotation that gave the path) for an absolute path or one that escapes (`../`, a symlink out)."""
    root = os.path.realpath(data_dir)
    if os.path.isabs(path):
        raise ValueError(f"{source}: absolute path {path!r} refused; annotation paths must be relative to {root}")
    resolved = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([resolved, root]) != root:
        raise ValueError(f"{source}: path {path!r} leaves the data folder {root}; refused")
    return resolved


__all__ = ["VIDEO_EXTENSIONS", "find_video_files", "index_videos", "is_video_file", "path_inside", "resolve_videos"]
