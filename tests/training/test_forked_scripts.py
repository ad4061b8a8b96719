"""`modeling_avigate.forked_scripts`: a script forked from the preloaded server runs as `__main__` with its own
arguments and the server's environment, its output reaches the caller line by line, and its exit code comes back."""

import subprocess
import sys
import textwrap
import time

import pytest

from modeling_avigate import forked_scripts


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_script_runs_as_main_with_its_arguments_and_output(tmp_path):
    path = _script(tmp_path, """
        import sys
        if __name__ == "__main__":
            print("argv", sys.argv[1:])
            print("to stderr", file=sys.stderr)
    """)
    lines = []
    assert forked_scripts.run_script(path, ["--seed", "3"], lines.append) == 0
    assert lines == ["argv ['--seed', '3']\n", "to stderr\n"]


def test_runs_get_the_configured_environment_and_the_caller_keeps_its_own(tmp_path):
    # The server is one per process, so this runs in a fresh interpreter.
    path = _script(tmp_path, """
        import os
        print("threads", os.environ.get("OMP_NUM_THREADS"), "marker", os.environ.get("FORKED_SCRIPTS_MARKER"))
    """)
    caller = textwrap.dedent(f"""
        import os
        from modeling_avigate import forked_scripts
        os.environ["OMP_NUM_THREADS"] = "4"
        forked_scripts.configure_server(["json"], {{"OMP_NUM_THREADS": "1", "FORKED_SCRIPTS_MARKER": "on"}})
        assert forked_scripts.run_script({str(path)!r}, [], print) == 0
        print("caller", os.environ["OMP_NUM_THREADS"], os.environ.get("FORKED_SCRIPTS_MARKER"))
    """)
    result = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["threads 1 marker on", "", "caller 4 None"]


def test_a_failing_script_returns_its_exit_code_and_traceback(tmp_path):
    path = _script(tmp_path, """
        raise ValueError("bad input file")
    """)
    lines = []
    assert forked_scripts.run_script(path, [], lines.append) == 1
    assert "ValueError: bad input file\n" in lines


def test_system_exit_codes_come_back(tmp_path):
    path = _script(tmp_path, """
        import sys
        sys.exit(3)
    """)
    assert forked_scripts.run_script(path, [], lambda line: None) == 3


def test_a_failing_line_handler_stops_the_run_and_reaches_the_caller(tmp_path):
    path = _script(tmp_path, """
        import time
        for _ in range(600):  # a minute of output unless its reader goes away
            print("progress", flush=True)
            time.sleep(0.1)
    """)

    def on_line(line: str) -> None:
        raise OSError("log disk full")

    started = time.monotonic()
    with pytest.raises(OSError, match="log disk full"):
        forked_scripts.run_script(path, [], on_line)
    assert time.monotonic() - started < 30  # the child ended at its next write, not after its minute
