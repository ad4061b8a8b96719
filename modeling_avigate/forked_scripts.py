"""Run Python scripts in processes forked from a server that imported what they need once.

A fresh interpreter spends ~5 CPU-seconds importing torch, transformers and accelerate before a script does anything,
which is 6 % of a demo training run. Here every run is forked from one multiprocessing "forkserver" process that
imported the modules given to `configure_server` once. That server is itself a fresh interpreter, so no run inherits the
caller's threads, locks or state, and each run still ends with its own process. As with multiprocessing's "spawn",
each run first imports the caller's main script, so that script must keep its work under
`if __name__ == "__main__":`.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection


_SERVER = multiprocessing.get_context("forkserver")
_ENVIRONMENT: dict[str, str] = {}
_STARTING = threading.Lock()
_started = False


def configure_server(modules: Sequence[str], environment: Mapping[str, str]) -> None:
    """What the server imports when it starts (at the first `run_script`), and what it adds to this process's
    environment. Thread counts such as `OMP_NUM_THREADS` belong there: numpy and torch read them when they load, in
    the server. A module that fails to import is skipped, which only makes each run import it itself. Once started,
    the server stays as it is for the life of this process."""
    _SERVER.set_forkserver_preload(list(modules))
    _ENVIRONMENT.clear()
    _ENVIRONMENT.update(environment)


def _ensure_server() -> None:
    """Start the server with `_ENVIRONMENT` set; this process's environment is restored right after."""
    global _started
    with _STARTING:
        if _started:
            return
        previous = {key: os.environ.get(key) for key in _ENVIRONMENT}
        os.environ.update(_ENVIRONMENT)
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            for key, value in previous.items():
                if value is None:
                    del os.environ[key]
                else:
                    os.environ[key] = value
        _started = True


def run_script(path: str, argv: Sequence[str], on_line: Callable[[str], None]) -> int:
    """Run the script `path` as `__main__` with arguments `argv` in a process forked from the server; `on_line`
    receives its stdout and stderr, line by line, as they come. Returns the process's exit code."""
    _ensure_server()
    reader, writer = _SERVER.Pipe(duplex=False)
    process = _SERVER.Process(target=_run_in_child, args=(path, list(argv), writer))
    process.start()
    writer.close()  # the child now holds the only write end, so the output ends when the child does
    try:
        with open(reader.fileno(), encoding="utf-8", errors="replace", closefd=False) as output:
            for line in output:
                on_line(line)
    finally:
        reader.close()  # if `on_line` failed, the child's next write fails, so the join waits no longer than that
        process.join()
    return process.exitcode


def _run_in_child(path: str, argv: list[str], output: Connection) -> None:
    os.dup2(output.fileno(), sys.stdout.fileno())
    os.dup2(output.fileno(), sys.stderr.fileno())
    output.close()
    sys.stdout.reconfigure(line_buffering=True)
    sys.argv = [path, *argv]
    runpy.run_path(path, run_name="__main__")
