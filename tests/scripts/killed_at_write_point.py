"""Test harness: run a Python script and SIGKILL the process at a named folder write point.

    python killed_at_write_point.py FOLDER_NAME NTH STAGE SCRIPT [ARGUMENTS ...]

The process kills itself on the NTH time (1-based) that `modeling_avigate.folders.replace_folder` is asked to put a
folder named FOLDER_NAME in place, at STAGE: `staged` (the staging folder is complete, nothing replaced yet) or
`parked` (the previous folder has been moved aside, the new one not yet moved in). The package itself has no kill
hook: this script wraps its one replace function from the outside.
"""

import os
import runpy
import signal
import sys

import modeling_avigate.folders as folders


def main() -> None:
    folder_name, nth, stage, script, *arguments = sys.argv[1:]
    calls = {"count": 0}
    replace_folder = folders.replace_folder

    def killing_replace_folder(staging, directory, kind, format_version=1):
        if os.path.basename(os.fspath(directory)) == folder_name:
            calls["count"] += 1
            if calls["count"] == int(nth):
                kill_at(stage)
        return replace_folder(staging, directory, kind, format_version)

    folders.replace_folder = killing_replace_folder
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")


def kill_at(stage: str) -> None:
    if stage == "staged":
        os.kill(os.getpid(), signal.SIGKILL)
    elif stage == "parked":
        rename = os.replace

        def kill_after_parking(source, target):
            rename(source, target)
            if os.path.basename(os.fspath(target)).endswith(folders.PREVIOUS_SUFFIX):
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = kill_after_parking
    else:
        raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main()
