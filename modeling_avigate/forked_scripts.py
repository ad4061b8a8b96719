"""Run Python scripts in processes forked from a server that imported what they need once.

A fresh interpreter spends ~5 CPU-seconds importing torch, transformers and accelerate before a script does anything,
which is 6 % of a demo training run. Here every run is forked from one multiprocessing "forkserver" process that
imported the `preload` modules once. That server is itself a fresh interpreter, so no run inherits the caller's
threads, locks or state, and each run still ends with its own process.
"""

import multiprocessing
import os
import runpy
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import torch


_SERVER = multiprocessing.get_context("forkserver")


def preload(modules: Sequence[str]) -> None:
    """Modules the server imports when it starts (at the first `run_script`; later calls change nothing). A name that
    fails to import is skipped, which only makes each run import it itself."""
    _SERVER.set_forkserver_preload(list(modules))


def run_script(path: str, argv: Sequence[str], threads: int, on_line: Callable[[str], None]) -> int:
    """Run the script `path` as `__main__` with arguments `argv` in a forked process with `threads` intra-op threads;
    `on_line` receives its stdout and stderr, line by line, as they come. Returns the process's exit code."""
    reader, writer = _SERVER.Pipe(duplex=False)
    process = _SERVER.Process(target=_run_in_child, args=(path, list(argv), writer, threads))
    process.start()
    writer.close()  # the child now holds the only write end, so the output ends when the child does
    with open(reader.fileno(), encoding="utf-8", errors="replace", closefd=False) as output:
        for line in output:
            on_line(line)
    reader.close()
    process.join()
    return process.exitcode


def _run_in_child(path: str, argv: list[str], output: Connection, threads: int) -> None:
    os.dup2(output.fileno(), sys.stdout.fileno())
    os.dup2(output.fileno(), sys.stderr.fileno())
    output.close()
    sys.stdout.reconfigure(line_buffering=True)
    torch.set_num_threads(threads)
    sys.argv = [path, *argv]
    runpy.run_path(path, run_name="__main__")
