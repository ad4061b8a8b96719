"""`modeling_avigate.forked_scripts`: a script forked from the preloaded server runs as `__main__` with its own
arguments and thread count, its output reaches the caller line by line, and its exit code comes back."""

import textwrap

from modeling_avigate import forked_scripts


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_a_script_runs_as_main_with_its_arguments_threads_and_output(tmp_path):
    path = _script(tmp_path, """
        import sys
        import torch
        if __name__ == "__main__":
            print("argv", sys.argv[1:])
            print("threads", torch.get_num_threads())
            print("to stderr", file=sys.stderr)
    """)
    lines = []
    assert forked_scripts.run_script(path, ["--seed", "3"], 1, lines.append) == 0
    assert lines == ["argv ['--seed', '3']\n", "threads 1\n", "to stderr\n"]


def test_a_failing_script_returns_its_exit_code_and_traceback(tmp_path):
    path = _script(tmp_path, """
        raise ValueError("bad input file")
    """)
    lines = []
    assert forked_scripts.run_script(path, [], 1, lines.append) == 1
    assert "ValueError: bad input file\n" in lines


def test_system_exit_codes_come_back(tmp_path):
    path = _script(tmp_path, """
        import sys
        sys.exit(3)
    """)
    assert forked_scripts.run_script(path, [], 1, lambda line: None) == 3
