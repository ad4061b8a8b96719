# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The one place that creates, replaces and deletes folders: a folder is only ever removed or replaced when it
carries this package's marker of the expected kind, so a mistyped output path never costs a user their files.

Every folder the package writes (index, feature cache, checkpoint, best model, staged Hub upload) holds a small
`.avigate-folder.json` naming its kind and format version. Writes go to a marked staging sibling
(`.NAME.tmp-XXXXXX`) that is renamed into place; the folder it replaces is first moved to `.NAME.previous` and removed
afterwards. A kill -9 at any point leaves either the old folder, the new one, or the old one parked at
`.NAME.previous`, which [`recover_interrupted_replace`] (called by every write and by loaders) moves back while the
new folder is still staged beside it. A parked folder whose replacement was moved in is never moved back, even if the
user later deletes the new folder. A killed writer's staging folder and parked folder are removed by the next write
(a folder is removed with its marker last, so a killed removal still carries it); a live writer's staging folder
(another process building the same cache) is left alone, told apart by the lock its writer holds. An output path
that is a symbolic link is refused: the package replaces folders, never what a link points to.

Example:

```python
>>> import os, tempfile
>>> from modeling_avigate.folders import atomic_folder, is_owned
>>> target = os.path.join(tempfile.mkdtemp(), "cache")
>>> with atomic_folder(target, kind="feature_cache") as staging:
...     _ = open(os.path.join(staging, "rows.npy"), "wb").write(b"...")
>>> is_owned(target, "feature_cache"), sorted(os.listdir(target))
(True, ['.avigate-folder.json', 'rows.npy'])
```
"""

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator


try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so a staging folder's writer cannot be told alive from killed
    fcntl = None


MARKER_FILE = ".avigate-folder.json"
STAGING_KIND = "staging"
PREVIOUS_SUFFIX = ".previous"
STAGING_INFIX = ".tmp-"


class FolderOwnershipError(ValueError):
    """A folder that the package would replace or delete was not created by it (or is of another kind), or an output
    path overlaps an input. The message is one line that names the folder."""


def write_marker(directory: str | os.PathLike, kind: str, format_version: int = 1) -> None:
    """Mark `directory` as a package-written folder of `kind`."""
    with open(os.path.join(directory, MARKER_FILE), "w", encoding="utf-8") as handle:
        json.dump({"created_by": "modeling_avigate", "kind": kind, "format_version": format_version}, handle)


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The marker of `directory`, or `None` when it has none (or an unreadable one)."""
    try:
        with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("created_by") == "modeling_avigate" else None


def is_owned(directory: str | os.PathLike, kind: str) -> bool:
    """Whether `directory` is a folder of `kind` written by this package."""
    marker = read_marker(directory)
    return marker is not None and marker.get("kind") == kind


def _is_empty_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)


def _with_article(kind: str) -> str:
    """`an index`, `a feature_cache`."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def check_replaceable(directory: str | os.PathLike, kind: str) -> None:
    """Raise [`FolderOwnershipError`] unless `directory` is absent, an empty folder, or this package's `kind` folder."""
    directory = os.fspath(directory)
    if os.path.islink(directory):
        raise FolderOwnershipError(f"refusing to replace {directory}: it is a symbolic link; give the path of the "
                                   f"folder itself ({os.path.realpath(directory)})")
    if not os.path.lexists(directory) or _is_empty_dir(directory) or is_owned(directory, kind):
        return
    if os.path.isdir(directory):
        marker = read_marker(directory)
        what = f"{_with_article(marker['kind'])} folder" if marker else "a folder this package did not create"
        raise FolderOwnershipError(f"refusing to replace {directory}: it is {what}, not {_with_article(kind)} folder; "
                                   "choose another path or remove it yourself")
    raise FolderOwnershipError(f"refusing to replace {directory}: it exists and is not a folder")


def remove_owned_folder(directory: str | os.PathLike, kind: str) -> None:
    """Delete `directory` if it is this package's `kind` folder (or empty); refuse anything else."""
    directory = os.fspath(directory)
    check_replaceable(directory, kind)
    if os.path.isdir(directory):
        _remove_marker_last(directory)


def _remove_marker_last(directory: str) -> None:
    """Delete the marked `directory`, its marker last: a kill midway leaves a folder still recognised as ours."""
    for entry in os.scandir(directory):
        if entry.name == MARKER_FILE:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, MARKER_FILE))
    os.rmdir(directory)


def check_output_separate(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], what: str = "output"
                          ) -> None:
    """Refuse an `output` path that is, sits inside, or contains one of `inputs` (symlinks resolved)."""
    out = os.path.realpath(output)
    for item in inputs:
        source = os.path.realpath(item)
        if out == source or _inside(out, source) or _inside(source, out):
            relation = "is" if out == source else "is inside" if _inside(out, source) else "contains"
            raise FolderOwnershipError(f"refusing {what} {os.fspath(output)}: it {relation} the input "
                                       f"{os.fspath(item)}")


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


def _siblings(directory: str) -> tuple[str, str]:
    parent, name = os.path.split(os.path.abspath(directory))
    return parent, name


def previous_path(directory: str | os.PathLike) -> str:
    parent, name = _siblings(os.fspath(directory))
    return os.path.join(parent, f".{name}{PREVIOUS_SUFFIX}")


def _staging_siblings(directory: str) -> list[str]:
    parent, name = _siblings(directory)
    if not os.path.isdir(parent):
        return []
    return [os.path.join(parent, entry) for entry in os.listdir(parent) if entry.startswith(f".{name}{STAGING_INFIX}")]


def recover_interrupted_replace(directory: str | os.PathLike) -> None:
    """Undo a replace that was killed between parking the old folder and moving the new one in: then the new folder,
    complete and marked with the old one's kind, is still staged beside it. A parked folder without one was replaced
    (the kill came while it was being removed) and stays parked for the next write to remove, even when `directory`
    is gone: a user who deleted the new folder does not get the old one back."""
    directory = os.fspath(directory)
    parked = previous_path(directory)
    marker = read_marker(parked)
    if os.path.lexists(directory) or marker is None:
        return
    staged = [path for path in _staging_siblings(directory) if not _staging_in_use(path)]
    if any((read_marker(path) or {}).get("kind") == marker["kind"] for path in staged):
        os.replace(parked, directory)


def clean_leftovers(directory: str | os.PathLike) -> None:
    """Remove marked staging and parked siblings of `directory` left by a killed write (never unmarked ones)."""
    directory = os.fspath(directory)
    recover_interrupted_replace(directory)
    parked = previous_path(directory)
    # A staging folder is marked as staging, or already as its final kind when the kill came during the replace.
    leftovers = [path for path in _staging_siblings(directory) if not _staging_in_use(path)] + [parked]
    for path in leftovers:
        if os.path.isdir(path) and not os.path.islink(path) and read_marker(path) is not None:
            _remove_marker_last(path)


def replace_folder(staging: str | os.PathLike, directory: str | os.PathLike, kind: str,
                   format_version: int = 1) -> None:
    """Move the fully written `staging` folder to `directory`, marking it as `kind`; the folder it replaces must be
    this package's `kind` folder (or absent / empty)."""
    staging, directory = os.fspath(staging), os.fspath(directory)
    recover_interrupted_replace(directory)
    check_replaceable(directory, kind)
    write_marker(staging, kind, format_version)
    parked = previous_path(directory)
    if os.path.lexists(parked):
        remove_owned_folder(parked, kind)
    if _is_empty_dir(directory):
        os.rmdir(directory)
    elif os.path.lexists(directory):
        os.replace(directory, parked)
    os.replace(staging, directory)
    if os.path.lexists(parked):
        _remove_marker_last(parked)


def write_json_atomically(path: str | os.PathLike, data: dict) -> None:
    """Write `data` as JSON to a temporary sibling and rename it over `path`: a kill leaves the old file or the new."""
    directory, name = _siblings(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    with open(temporary, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(temporary, path)


def make_staging_dir(parent: str, name: str) -> str:
    """A new empty `.NAME.tmp-XXXXXXXX` folder in `parent`, with the permissions the user's umask gives any folder
    (`tempfile.mkdtemp` would make it, and so the finished folder, private to its owner)."""
    while True:
        staging = os.path.join(parent, f".{name}{STAGING_INFIX}{secrets.token_hex(4)}")
        try:
            os.mkdir(staging)
            return staging
        except FileExistsError:
            continue


@contextlib.contextmanager
def _writer_lock(staging: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `staging`'s marker file while the block runs: the operating system drops it
    when the writer exits or is killed, which is how [`clean_leftovers`] tells a live writer's folder from a dead one's
    (two trainings building the same cache at once must not delete each other's staging folder)."""
    descriptor = os.open(os.path.join(staging, MARKER_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _staging_in_use(staging: str) -> bool:
    """Whether a live process holds [`_writer_lock`] on `staging`."""
    if fcntl is None:
        return False
    try:
        descriptor = os.open(os.path.join(staging, MARKER_FILE), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


@contextlib.contextmanager
def atomic_folder(directory: str | os.PathLike, kind: str, format_version: int = 1) -> Iterator[str]:
    """Yield a marked staging folder beside `directory`; on success it replaces `directory` (see
    [`replace_folder`]), on error it is removed. The check that `directory` may be replaced runs first, before any
    work is done."""
    directory = os.path.abspath(os.fspath(directory))
    clean_leftovers(directory)
    check_replaceable(directory, kind)
    parent, name = _siblings(directory)
    os.makedirs(parent, exist_ok=True)
    staging = make_staging_dir(parent, name)
    # Locked before the marker is written: until then `read_marker` finds nothing and no cleaner touches the folder.
    with _writer_lock(staging):
        write_marker(staging, STAGING_KIND)
        try:
            yield staging
            replace_folder(staging, directory, kind, format_version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


__all__ = [
    "FolderOwnershipError",
    "MARKER_FILE",
    "atomic_folder",
    "check_output_separate",
    "check_replaceable",
    "clean_leftovers",
    "is_owned",
    "read_marker",
    "recover_interrupted_replace",
    "remove_owned_folder",
    "replace_folder",
    "write_json_atomically",
    "write_marker",
]
