# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Decode many files in child processes, so that a crash in native code (FFmpeg, PyAV) costs one file, not the run.

A segmentation fault in a decoder cannot be caught in the process it happens in. [`decode_isolated`] runs the decode
function in worker processes and reads its results over a pipe; a worker that dies (killed by a signal, or exiting
without answering) becomes a [`MediaError`] naming the file, such as `clip.mp4: decoder crashed: signal 11
(SIGSEGV)`, a fresh worker takes the next file, and the caller skips and lists the file like any bad file.

Workers are started with multiprocessing's "spawn" method (a fresh interpreter: nothing is inherited from a caller
that holds threads or a model), so `decode` must be importable by reference (a module-level function, or a
`functools.partial` of one) and the caller's main script must keep its work under `if __name__ == "__main__":`.

Example:

```python
>>> import functools
>>> from modeling_avigate.isolated_decoding import decode_isolated
>>> from modeling_avigate.processors import DecodeSettings, MediaError, decode_segments
>>> decode = functools.partial(decode_segments, settings=DecodeSettings(segment_seconds=10.0))
>>> for path, item in decode_isolated(["a.mp4", "broken.mp4"], decode):  # doctest: +SKIP
...     if isinstance(item, MediaError):
...         print("skipped", item)  # earlier segments of `path`, if any, must be dropped
...     else:
...         print(path, item.start, item.end)
```
"""

import multiprocessing
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from .processors import MediaError


T = TypeVar("T")
_CONTEXT = multiprocessing.get_context("spawn")


class _Worker:
    """One child process running `decode` on the paths it is sent, one at a time."""

    def __init__(self, decode: Callable[[str], Iterable[Any]]):
        self.connection, child_connection = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_serve, args=(child_connection, decode), daemon=True)
        self.process.start()
        child_connection.close()

    def start(self, path: str) -> None:
        self.connection.send(path)

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except OSError:  # the worker is already gone
            pass
        self.connection.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def death(self, path: str) -> MediaError:
        """The error for a worker that died while decoding `path`."""
        self.connection.close()
        self.process.join()
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            return MediaError(path, f"decoder crashed: signal {-code}{name}")
        return MediaError(path, f"decoder exited with status {code} without finishing")


def _serve(connection: Connection, decode: Callable[[str], Iterable[Any]]) -> None:
    """Worker loop: for each path received, send `("item", x)` per result, then `("end", None)`, `("error",
    MediaError)` or `("bug", traceback)`; `None` ends the loop."""
    while (path := connection.recv()) is not None:
        try:
            for item in decode(path):
                connection.send(("item", item))
        except MediaError as error:
            connection.send(("error", error))
        except Exception:  # a bug, not a bad file: the parent raises it with the worker's traceback
            connection.send(("bug", traceback.format_exc()))
        else:
            connection.send(("end", None))


def decode_isolated(
    paths: Iterable[str], decode: Callable[[str], Iterable[T]], num_workers: int = 1
) -> Iterator[tuple[str, T | MediaError]]:
    """Run `decode(path)` for every path in child processes and yield its results in the order of `paths`.

    Args:
        paths: the files.
        decode: returns (or yields) the results of one file, e.g. [`decode_segments`] with its settings bound by
            `functools.partial`; results cross the process boundary by pickling, one at a time, so a generator's
            results stream with bounded memory.
        num_workers: files decoded at the same time (each in its own process); results still come in `paths` order.

    Yields:
        `(path, result)` for each result of `decode(path)`; then, if the file failed, one `(path, MediaError)`: the
        error `decode` raised, or `decoder crashed: signal N (NAME)` when the native code killed its worker. A failed
        file may have yielded results before its error; the caller drops them. Other files go on either way.

    Raises:
        RuntimeError: `decode` raised something other than a [`MediaError`] (a bug): the message holds the worker's
            traceback.
    """
    if num_workers < 1:
        raise ValueError(f"`num_workers` must be at least 1, got {num_workers}.")
    pending = iter(paths)
    idle: list[_Worker] = []
    running: deque[tuple[str, _Worker]] = deque()
    try:
        while True:
            while len(running) < num_workers and (path := next(pending, None)) is not None:
                worker = idle.pop() if idle else _Worker(decode)
                worker.start(path)
                running.append((path, worker))
            if not running:
                return
            path, worker = running.popleft()
            crashed = yield from _results(path, worker)
            if not crashed:
                idle.append(worker)
    finally:
        for _, worker in running:
            worker.process.kill()
            worker.stop()
        for worker in idle:
            worker.stop()


def _results(path: str, worker: _Worker) -> Iterator[tuple[str, Any]]:
    """Relay one file's results from its worker; returns whether the worker died."""
    while True:
        try:
            kind, value = worker.connection.recv()
        except (EOFError, ConnectionResetError):
            yield path, worker.death(path)
            return True
        if kind == "item":
            yield path, value
        elif kind == "error":
            yield path, value
            return False
        elif kind == "bug":
            raise RuntimeError(f"decoding {path} failed in a worker process:\n{value}")
        else:
            return False
