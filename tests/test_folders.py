"""Ownership markers and atomic folder replacement: the package never deletes or replaces a folder it did not write."""

import os
import subprocess
import sys
import textwrap

import pytest

from modeling_avigate.folders import (
    MARKER_FILE,
    FolderOwnershipError,
    atomic_folder,
    check_output_separate,
    clean_leftovers,
    is_owned,
    previous_path,
    recover_interrupted_replace,
    remove_owned_folder,
    write_marker,
)
from modeling_avigate.search import check_index_output

from conftest import folder_snapshot as _snapshot


def _write(path, text="data"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def test_atomic_folder_writes_marker_and_replaces_its_own_kind(tmp_path):
    target = tmp_path / "cache"
    with atomic_folder(target, kind="feature_cache") as staging:
        _write(os.path.join(staging, "a.txt"), "one")
    assert is_owned(target, "feature_cache")
    with atomic_folder(target, kind="feature_cache") as staging:
        _write(os.path.join(staging, "b.txt"), "two")
    assert sorted(os.listdir(target)) == [MARKER_FILE, "b.txt"]
    assert os.listdir(tmp_path) == ["cache"]  # no staging or parked sibling left


@pytest.mark.parametrize("kind_of_existing", ["foreign", "other_kind", "file"])
def test_refuses_to_replace_what_it_did_not_create(tmp_path, kind_of_existing):
    target = tmp_path / "out"
    if kind_of_existing == "file":
        _write(str(target), "precious")
    else:
        _write(str(target / "holiday.mp4"), "precious")
        if kind_of_existing == "other_kind":
            with atomic_folder(tmp_path / "tmpl", kind="index") as staging:
                _write(os.path.join(staging, "x"))
            os.replace(tmp_path / "tmpl" / MARKER_FILE, target / MARKER_FILE)
    before = _snapshot(tmp_path)
    with pytest.raises(FolderOwnershipError, match="refusing to replace .*out"):
        with atomic_folder(target, kind="feature_cache") as staging:
            _write(os.path.join(staging, "a.txt"))
    with pytest.raises(FolderOwnershipError):
        remove_owned_folder(target, "feature_cache")
    assert _snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == sorted(["out"] + (["tmpl"] if kind_of_existing == "other_kind" else []))


def test_empty_folder_may_be_used(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with atomic_folder(target, kind="index") as staging:
        _write(os.path.join(staging, "a"))
    assert is_owned(target, "index")


def test_error_inside_leaves_old_folder(tmp_path):
    target = tmp_path / "cache"
    with atomic_folder(target, kind="feature_cache") as staging:
        _write(os.path.join(staging, "a.txt"), "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, kind="feature_cache") as staging:
            _write(os.path.join(staging, "a.txt"), "new")
            raise RuntimeError("boom")
    assert open(target / "a.txt").read() == "old"
    assert os.listdir(tmp_path) == ["cache"]


@pytest.mark.parametrize(
    "output, inputs, relation",
    [("videos", ["videos"], "is"), ("videos/index", ["videos"], "is inside"), ("data", ["data/videos"], "contains")],
)
def test_output_overlapping_an_input_is_refused(tmp_path, output, inputs, relation):
    (tmp_path / "data" / "videos").mkdir(parents=True)
    (tmp_path / "videos").mkdir()
    with pytest.raises(FolderOwnershipError, match=relation):
        check_output_separate(tmp_path / output, [tmp_path / path for path in inputs])
    check_output_separate(tmp_path / "elsewhere", [tmp_path / path for path in inputs])


def test_kill_between_park_and_move_is_recovered(tmp_path):
    """A kill -9 after the old folder was parked and before the new one moved in: the old one comes back."""
    target = tmp_path / "index"
    with atomic_folder(target, kind="index") as staging:
        _write(os.path.join(staging, "v"), "old")
    staging = tmp_path / ".index.tmp-killed"  # the new folder, already marked with its final kind
    _write(str(staging / "v"), "new")
    write_marker(staging, "index")
    os.replace(target, previous_path(target))  # what replace_folder does right before its final rename
    clean_leftovers(target)
    assert open(target / "v").read() == "old"
    assert sorted(os.listdir(tmp_path)) == ["index"]


KILLED_DURING_CLEANUP = """
import os, shutil, signal, sys
from modeling_avigate.folders import atomic_folder, previous_path
target = sys.argv[1]
parked = previous_path(target)

def kill_inside_parked(remove):
    def removing(path, *args, **kwargs):
        if os.fspath(path).startswith(parked):
            os.kill(os.getpid(), signal.SIGKILL)
        return remove(path, *args, **kwargs)
    return removing

os.remove, shutil.rmtree = kill_inside_parked(os.remove), kill_inside_parked(shutil.rmtree)
with atomic_folder(target, kind="index") as staging:
    open(os.path.join(staging, "v"), "w").write("new")
"""


def test_a_replaced_folder_left_parked_by_a_kill_is_never_moved_back(tmp_path):
    """kill -9 while the old folder is being removed after the new one moved in, then the user deletes the new one:
    readers and writers must not bring the old one back."""
    target = tmp_path / "index"
    with atomic_folder(target, kind="index") as staging:
        _write(os.path.join(staging, "v"), "old")
    script = tmp_path / "killed.py"
    script.write_text(KILLED_DURING_CLEANUP)
    result = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr[-2000:]
    assert open(target / "v").read() == "new" and os.path.isdir(previous_path(target))

    recover_interrupted_replace(target)  # what a reader does first
    assert open(target / "v").read() == "new"
    for path in sorted(tmp_path.glob("index/*")):
        os.remove(path)
    os.rmdir(target)  # the user deletes the index
    recover_interrupted_replace(target)
    assert not os.path.lexists(target)
    with atomic_folder(target, kind="index") as staging:  # the next write removes the leftover
        _write(os.path.join(staging, "v"), "newest")
    assert sorted(os.listdir(tmp_path)) == ["index", "killed.py"]


def test_a_symbolic_link_output_is_refused_and_left_as_it_is(tmp_path):
    """An output path that is a link to an index: refused with one line before anything is written (it used to be
    replaced by the new folder, then fail on removing the parked link at every later run)."""
    real = tmp_path / "real"
    with atomic_folder(real, kind="index") as staging:
        _write(os.path.join(staging, "v"), "old")
    link = tmp_path / "link"
    os.symlink(real, link)
    before = _snapshot(tmp_path)
    with pytest.raises(FolderOwnershipError, match=f"refusing to replace {link}: it is a symbolic link; give the path "
                                                   f"of the folder itself \\({real}\\)"):
        with atomic_folder(link, kind="index") as staging:
            _write(os.path.join(staging, "v"), "new")
    with pytest.raises(FolderOwnershipError, match="symbolic link"):
        check_index_output(link, [tmp_path / "videos"])  # `avigate index --out LINK`, before any video is embedded
    with pytest.raises(FolderOwnershipError, match="symbolic link"):
        remove_owned_folder(link, "index")
    assert os.path.islink(link) and _snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["link", "real"]


def test_kill_during_staging_leaves_previous_state_and_is_cleaned(tmp_path):
    target = tmp_path / "index"
    with atomic_folder(target, kind="index") as staging:
        _write(os.path.join(staging, "v"), "old")
    script = textwrap.dedent(f"""
        import os, signal
        from modeling_avigate.folders import atomic_folder
        with atomic_folder({str(target)!r}, kind="index") as staging:
            open(os.path.join(staging, "v"), "w").write("half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    assert open(target / "v").read() == "old"
    assert len(os.listdir(tmp_path)) == 2  # the marked staging folder of the killed run
    stranger = tmp_path / ".index.tmp-user"  # same pattern, but not ours: never removed
    _write(str(stranger / "keep"))
    with atomic_folder(target, kind="index") as staging:
        _write(os.path.join(staging, "v"), "new")
    assert sorted(os.listdir(tmp_path)) == [".index.tmp-user", "index"]
    assert open(target / "v").read() == "new"


@pytest.mark.skipif(sys.platform == "win32", reason="writers are told alive by fcntl advisory locks (POSIX only)")
def test_a_live_writers_staging_folder_survives_a_concurrent_write(tmp_path):
    """Two processes building the same cache at once: the second one's clean-up leaves the first one's staging folder
    (its writer holds the lock) and both finish; once the first writer is killed -9, its folder is a leftover."""
    target = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import os, sys, time
        from modeling_avigate.folders import atomic_folder
        with atomic_folder({str(target)!r}, kind="feature_cache") as staging:
            open(os.path.join(staging, "rows"), "w").write("first")
            print(staging, flush=True)
            time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        first_staging = writer.stdout.readline().strip()
        with atomic_folder(target, kind="feature_cache") as staging:
            _write(os.path.join(staging, "rows"), "second")
        assert open(os.path.join(first_staging, "rows")).read() == "first"
        assert open(target / "rows").read() == "second"
    finally:
        writer.kill()
        writer.wait()
    clean_leftovers(target)
    assert sorted(os.listdir(tmp_path)) == ["cache"]


def test_written_folder_has_the_permissions_of_any_folder_the_user_makes(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with atomic_folder(tmp_path / "written", kind="index") as staging:
        _write(os.path.join(staging, "v"))
    assert os.stat(tmp_path / "written").st_mode == os.stat(plain).st_mode
