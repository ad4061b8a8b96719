"""Index folders never cost a user their files: ownership markers, outputs that overlap inputs, kill -9 during a save,
and one clear line (never a traceback or a silently wrong search) for every corrupt piece of an index."""

import json
import os
import re
import textwrap

import pytest
import torch

from modeling_avigate.cli import main
from modeling_avigate.folders import MARKER_FILE, FolderOwnershipError, is_owned, write_marker
from modeling_avigate.search import PREVIEWS_FILE, CorruptIndexError, VideoIndex, build_first_stage
from modeling_avigate.search.metadata import METADATA_CHECKSUM_KEY, SCHEMA, metadata_checksum

from builders import run_script
from conftest import folder_snapshot as _snapshot


def _gallery(num_videos: int = 20, seed: int = 0) -> VideoIndex:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.nn.functional.normalize(torch.randn(num_videos, 3, 16, generator=generator), dim=-1)
    return VideoIndex.from_embeddings([f"/videos/v{i}.mp4" for i in range(num_videos)], frames)


def _cli_error(capsys, *argv) -> str:
    """Run the CLI, check it failed with exactly one error line and no traceback, and return that line."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0] == captured.err.strip().splitlines()[-1]
    assert lines[0].startswith(f"avigate {argv[0]}: error:")
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Ownership and overlapping outputs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, reason",
    [
        ("videos", "it is the input"),
        ("videos/index", "it is inside the input"),
        (".", "it contains the input"),
        ("photos", "photos: it is a folder this package did not create"),
        ("gallery", "gallery.shards: it is a folder this package did not create"),  # the sharded build's work folder
    ],
)
def test_index_output_that_would_touch_user_files_is_refused_and_nothing_changes(tmp_path, capsys, out, reason):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "holiday.mp4").write_bytes(b"not decoded: the refusal comes first")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a photo")
    (tmp_path / "gallery.shards").mkdir()
    (tmp_path / "gallery.shards" / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    error = _cli_error(capsys, "index", tmp_path / "videos", "--model", "unused/model", "--out", tmp_path / out)
    assert reason in error
    assert _snapshot(tmp_path) == before


def test_save_refuses_foreign_folders_and_other_kinds(tmp_path):
    index = _gallery()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("years of work")
    (tmp_path / "cache").mkdir()
    write_marker(tmp_path / "cache", "feature_cache")
    before = _snapshot(tmp_path)
    with pytest.raises(FolderOwnershipError, match=r"refusing to replace .*docs: it is a folder this package did not"):
        index.save(tmp_path / "docs")
    with pytest.raises(FolderOwnershipError, match="it is a feature_cache folder, not an index folder"):
        index.save(tmp_path / "cache")
    assert _snapshot(tmp_path) == before
    index.save(tmp_path / "gallery")
    assert is_owned(tmp_path / "gallery", "index")
    assert sorted(os.listdir(tmp_path / "gallery")) == sorted([MARKER_FILE, "index.json", "embeddings.safetensors",
                                                             PREVIEWS_FILE])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    import modeling_avigate.folders as folders
    import modeling_avigate.search.storage as storage
    from modeling_avigate.search import VideoIndex

    target, point = sys.argv[1], sys.argv[2]
    generator = torch.Generator().manual_seed(1)
    frames = torch.nn.functional.normalize(torch.randn(20, 3, 16, generator=generator), dim=-1)
    new = VideoIndex.from_embeddings([f"/videos/new{i}.mp4" for i in range(20)], frames)

    def kill(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(function):
        def wrapped(*args, **kwargs):
            function(*args, **kwargs)
            kill()
        return wrapped

    if point == "embeddings written":
        storage.save_file = after(storage.save_file)
    elif point == "old index parked":
        real_replace = folders.os.replace
        folders.os.replace = lambda source, destination: (
            kill() if destination == target else real_replace(source, destination))
    elif point == "new index in place":
        folders._remove_marker_last = kill  # the removal of the parked old index
    new.save(target)
""")


@pytest.fixture(scope="module")
def kill_script(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("scripts") / "killed_save.py"
    path.write_text(KILL_SCRIPT)
    return str(path)


@pytest.mark.parametrize("point, survivor", [("embeddings written", "old"), ("old index parked", "old"),
                                             ("new index in place", "new")])
def test_kill_9_during_save_leaves_a_loadable_index_and_the_next_save_cleans_up(tmp_path, kill_script, point,
                                                                                survivor):
    target = str(tmp_path / "gallery")
    _gallery().save(target)
    result = run_script(kill_script, [target, point])  # forked from the preloaded server, killed there
    assert result.returncode == -9, result.output[-2000:]
    loaded = VideoIndex.load(target)
    assert os.path.basename(loaded.paths[0]) == ("v0.mp4" if survivor == "old" else "new0.mp4")
    _gallery(seed=2).save(target)
    assert sorted(os.listdir(tmp_path)) == ["gallery"]  # marked staging / parked leftovers are gone
    assert len(VideoIndex.load(target)) == 20


# ---------------------------------------------------------------------------------------------------------------
# Corrupt index pieces
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def staged(tmp_path):
    pytest.importorskip("faiss")
    index = _gallery()
    index.build_first_stage("flat", shortlist_size=5)
    index.save(tmp_path / "gallery")
    return tmp_path / "gallery"


def _edit_metadata(folder, edit, sign: bool = True) -> None:
    """Edit `index.json`; with `sign`, update its checksum as a forger would, so the checks behind it are reached."""
    path = folder / "index.json"
    metadata = json.loads(path.read_text())
    edit(metadata)
    if sign:
        metadata[METADATA_CHECKSUM_KEY] = metadata_checksum(metadata)
    path.write_text(json.dumps(metadata))


def _assert_clear_error(folder, capsys, pattern: str, verify: bool = True) -> None:
    with pytest.raises(CorruptIndexError, match=pattern):
        VideoIndex.load(folder, verify=verify)
    # `avigate search` reads every file before it loads a model (`avigate info` reads index.json and the checksums).
    error = _cli_error(capsys, "search", folder, "a query", "--model", folder.parent / "no-model",
                       *([] if verify else ["--no-verify"]))
    assert re.search(pattern, error)


@pytest.mark.parametrize("key", ["format_version", *SCHEMA])
def test_every_missing_key_of_index_json_is_one_clear_line(staged, capsys, key):
    _edit_metadata(staged, lambda metadata: metadata.pop(key))
    pattern = "unsupported index format None" if key == "format_version" else f"key '{key}' is missing"
    _assert_clear_error(staged, capsys, pattern)


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_videos", "20"),
        ("num_frames", -3),
        ("dim", 16.0),
        ("dim", True),
        ("model", {"logit_scale": "100"}),
        ("model", {"logit_scale": 100.0, "lse_temperature": 1.0, "name_or_path": 7}),
        ("processor", 7),
        ("first_stage", {"kind": "lsh", "shortlist_size": 5}),
        ("first_stage", {"kind": "flat", "shortlist_size": 0}),
        ("first_stage", {"kind": "ivf", "shortlist_size": 5, "nprobe": "32"}),
        ("checksums", {"embeddings.safetensors": "x", "../../outside.txt": "y"}),
        ("checksums", {"first_stage.faiss": "x"}),
        ("videos", [{"path": 3}] * 20),
        ("videos", "v0.mp4"),
        ("failures", [{"path": "a.mp4"}]),
    ],
)
def test_every_wrong_type_in_index_json_is_one_clear_line(staged, capsys, key, value):
    _edit_metadata(staged, lambda metadata: metadata.update({key: value}))
    _assert_clear_error(staged, capsys, f"key '{key}' must be")


def test_inconsistent_counts_in_index_json(staged, capsys):
    _edit_metadata(staged, lambda metadata: metadata.update(videos=metadata["videos"][:-1]))
    _assert_clear_error(staged, capsys, "19 videos listed but num_videos is 20")
    _edit_metadata(staged, lambda metadata: metadata.update(videos=metadata["videos"] + [{"path": "x.mp4"}]))
    _edit_metadata(staged, lambda metadata: metadata["checksums"].pop("first_stage.faiss"))
    _assert_clear_error(staged, capsys, "flat first stage is recorded but first_stage.faiss has no checksum")
    _edit_metadata(staged, lambda metadata: metadata.update(
        first_stage=None, num_videos=21, videos=metadata["videos"] + [{"path": "y.mp4"}]))
    _assert_clear_error(staged, capsys, r"frame_embeds of shape \(20, 3, 16\), index.json describes \(21, 3, 16\)")


def _replace_first_stage(folder, first_stage, update_checksum: bool) -> None:
    import faiss

    from modeling_avigate.fingerprints import sha256_file

    faiss.write_index(first_stage, str(folder / "first_stage.faiss"))
    if update_checksum:
        _edit_metadata(folder, lambda metadata: metadata["checksums"].update(
            {"first_stage.faiss": sha256_file(folder / "first_stage.faiss")}))


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda vectors: build_first_stage(vectors[:, :8], "flat"), "dimension 8 instead of 16"),
        (lambda vectors: build_first_stage(vectors[:12], "flat"), "12 vectors instead of 20"),
        (lambda vectors: build_first_stage(vectors, "hnsw"), "it is a hnsw index, not flat"),
    ],
)
@pytest.mark.parametrize("verify", [True, False])
def test_first_stage_of_wrong_size_or_kind_is_refused(staged, capsys, make, pattern, verify):
    vectors = VideoIndex.load(staged).video_embeds.numpy()
    # With verify, the checksum is updated too (a consistent but wrong file); without, the file alone is swapped.
    _replace_first_stage(staged, make(vectors), update_checksum=verify)
    _assert_clear_error(staged, capsys, pattern, verify=verify)


def _assert_damage_is_named(staged, capsys, name: str, unreadable: str) -> None:
    """A flipped byte in data file `name` fails its checksum; garbage read without the checksum gives `unreadable`;
    a missing file is named. The file is gone afterwards."""
    data_file = staged / name
    content = bytearray(data_file.read_bytes())
    content[-5] ^= 0xFF
    data_file.write_bytes(bytes(content))
    _assert_clear_error(staged, capsys, f"{name} does not match its checksum")
    data_file.write_bytes(b"garbage, not an index" * 4)
    _assert_clear_error(staged, capsys, unreadable, verify=False)
    data_file.unlink()
    _assert_clear_error(staged, capsys, f"{name} is missing", verify=False)


def test_faiss_file_is_covered_by_the_checksum_and_read_safely_without_it(staged, capsys):
    _assert_damage_is_named(staged, capsys, "first_stage.faiss", "first_stage.faiss is not a readable faiss index")


def test_previews_file_is_checked_like_the_embeddings(staged, capsys):
    from modeling_avigate.fingerprints import sha256_file
    from modeling_avigate.search import VideoPreviews

    _assert_damage_is_named(staged, capsys, PREVIEWS_FILE, "previews.safetensors cannot be read")
    previews_file = staged / PREVIEWS_FILE
    # A readable file of the wrong size, with its checksum updated: the counts in index.json still refuse it.
    VideoPreviews.empty(12, 3).save(previews_file)
    _edit_metadata(staged, lambda metadata: metadata["checksums"].update({PREVIEWS_FILE: sha256_file(previews_file)}))
    _assert_clear_error(staged, capsys, r"previews of 12 videos .* index.json describes \(20, 3\)")
    _edit_metadata(staged, lambda metadata: metadata["checksums"].pop(PREVIEWS_FILE))
    _assert_clear_error(staged, capsys, "previews.safetensors has no checksum")


def test_format_versions_older_and_newer(staged, capsys):
    from modeling_avigate.search import OutdatedIndexError

    _edit_metadata(staged, lambda metadata: metadata.update(format_version=4))
    _assert_clear_error(staged, capsys, "unsupported index format 4 \\(this version reads 3\\)")
    _edit_metadata(staged, lambda metadata: metadata.update(format_version=True))  # not 1, although True == 1
    _assert_clear_error(staged, capsys, "unsupported index format True")
    for old in (1, 2):  # whole-file indexes without segment spans (2), and without previews (1)
        _edit_metadata(staged, lambda metadata: metadata.update(format_version=old))
        with pytest.raises(OutdatedIndexError, match="rebuild it with 'avigate index'"):
            VideoIndex.load(staged)
        error = _cli_error(capsys, "info", staged)
        assert error == (f"avigate info: error: {staged} is an index of format {old}, written by an older version "
                         "of modeling_avigate (this one reads format 3); rebuild it with 'avigate index'")


def test_index_json_is_covered_by_its_checksum_and_its_paths_must_name_videos(staged, capsys):
    def to_passwd(metadata):
        metadata["videos"][0]["path"] = "/etc/passwd"

    _edit_metadata(staged, lambda metadata: None, sign=False)  # re-indented only: the checksum is of the content
    VideoIndex.load(staged)
    _edit_metadata(staged, to_passwd, sign=False)
    _assert_clear_error(staged, capsys, "index.json was changed after the index was written")
    _assert_clear_error(staged, capsys, "index.json was changed after the index was written", verify=False)
    _edit_metadata(staged, to_passwd)  # a forged checksum: the path itself is refused
    _assert_clear_error(staged, capsys, "key 'videos' must be a list of objects whose path names a video file")


def test_search_reports_a_corrupt_index_before_loading_any_model(staged, capsys):
    _edit_metadata(staged, lambda metadata: metadata.pop("dim"))
    error = _cli_error(capsys, "search", staged, "a dog", "--model", staged.parent / "no-model")
    assert "key 'dim' is missing" in error
