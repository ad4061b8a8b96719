"""Benchmark builders on mini fixtures written in the exact real annotation formats, with tiny generated clips."""

import csv
import json
import os
import shutil
from unittest import mock

import pytest
from datasets import load_dataset
from media import tone, write_test_video

from modeling_avigate.data import export_benchmark_parquet, load_benchmark, push_benchmark_to_hub
from modeling_avigate.data.builders import index_videos


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Encoded once per module and copied into each fixture folder: an mp4 with sound, one without, a real webm."""
    folder = tmp_path_factory.mktemp("clips")
    common = dict(num_frames=4, fps=4, size=(32, 24))
    return {
        "sound": write_test_video(str(folder / "sound.mp4"), audio=tone(440.0, 1.0, 16000), **common),
        "silent": write_test_video(str(folder / "silent.mp4"), **common),
        "webm": write_test_video(str(folder / "clip.webm"), codec="libvpx", **common),
    }


def _place(source: str, *parts) -> str:
    path = os.path.join(*map(str, parts))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(source, path)
    return path


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def msrvtt_dir(tmp_path, clips):
    root = tmp_path / "msrvtt"
    root.mkdir()
    captions = {f"video{i}": [f"caption {j} of video {i}" for j in range(i + 1)] for i in range(6)}
    sentences = [
        {"caption": caption, "video_id": video_id, "sen_id": n}
        for n, (video_id, caption) in enumerate((v, c) for v, cs in captions.items() for c in cs)
    ]
    (root / "MSRVTT_data.json").write_text(json.dumps({"info": {}, "videos": [], "sentences": sentences}))
    _write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video1"], ["video2"]])
    _write_csv(root / "MSRVTT_train.7k.csv", ["video_id"], [["video0"], ["video1"]])
    _write_csv(
        root / "MSRVTT_JSFUSION_test.csv",
        ["", "key", "vid_key", "video_id", "sentence"],
        [[0, "ret0", "msr7020", "video3", "a man talks"], [1, "ret1", "msr7021", "video4", "a dog barks, loudly"],
         [2, "ret2", "msr7022", "video5", "a cat meows"]],
    )
    _place(clips["sound"], root, "videos", "all", "video0.mp4")
    _place(clips["webm"], root, "videos", "all", "video1.webm")  # webm-only copy: the fallback
    _place(clips["silent"], root, "videos", "all", "video2.mp4")
    _place(clips["webm"], root, "videos", "all", "video2.webm")  # both present: mp4 wins
    _place(clips["sound"], root, "videos", "all", "video3.mp4")
    _place(clips["silent"], root, "videos", "all", "video5.mp4")
    return root  # video4 (test) is missing


def test_msrvtt_train_pairs_and_webm_fallback(msrvtt_dir, tmp_path):
    # all splits are prepared together, so the missing test video is reported while loading train too
    with pytest.warns(UserWarning, match="video4"):
        pairs = load_benchmark("msrvtt", str(msrvtt_dir), "train", cache_dir=str(tmp_path / "cache"))
    assert pairs.num_rows == 1 + 2 + 3  # every caption of the 9k videos, from MSRVTT_data.json
    assert pairs["caption"][:3] == ["caption 0 of video 0", "caption 0 of video 1", "caption 1 of video 1"]
    paths = dict(zip(pairs["video_id"], pairs["video"]))
    assert paths["video1"].endswith("video1.webm") and paths["video2"].endswith("video2.mp4")
    assert os.path.isabs(paths["video0"]) and set(pairs["has_audio"]) == {None}
    with pytest.warns(UserWarning, match="video4"):
        seven = load_benchmark("msrvtt", str(msrvtt_dir), "train", train_split="7k", cache_dir=str(tmp_path / "cache"))
    assert seven.num_rows == 3


def test_msrvtt_test_missing_video_warns_once_and_strict_raises(msrvtt_dir, tmp_path):
    with pytest.warns(UserWarning, match=r"1 annotated video\(s\) not found .*video4") as record:
        videos = load_benchmark("msrvtt", str(msrvtt_dir), "test", view="videos", cache_dir=str(tmp_path / "c"))
    assert len([w for w in record if "not found" in str(w.message)]) == 1
    assert videos["video_id"] == ["video3", "video5"] and videos["captions"] == [["a man talks"], ["a cat meows"]]
    with pytest.raises(FileNotFoundError, match="video4"):
        load_benchmark("msrvtt", str(msrvtt_dir), "test", strict=True, cache_dir=str(tmp_path / "strict"))


def test_scan_audio_records_sound_tracks(msrvtt_dir, tmp_path):
    with pytest.warns(UserWarning):
        test = load_benchmark("msrvtt", str(msrvtt_dir), "test", scan_audio=True, cache_dir=str(tmp_path / "c"))
    assert dict(zip(test["video_id"], test["has_audio"])) == {"video3": True, "video5": False}


def test_changed_files_or_data_dir_do_not_return_a_stale_cache(msrvtt_dir, clips, tmp_path):
    cache = str(tmp_path / "cache")
    with pytest.warns(UserWarning):
        assert load_benchmark("msrvtt", str(msrvtt_dir), "test", cache_dir=cache).num_rows == 2
    _place(clips["sound"], msrvtt_dir, "videos", "extra", "video4.mp4")
    assert load_benchmark("msrvtt", str(msrvtt_dir), "test", cache_dir=cache).num_rows == 3
    other = tmp_path / "other"
    shutil.copytree(msrvtt_dir, other)
    os.remove(other / "videos" / "all" / "video3.mp4")
    with pytest.warns(UserWarning, match="video3"):
        assert load_benchmark("msrvtt", str(other), "test", cache_dir=cache)["video_id"] == ["video4", "video5"]


def test_vatex_multi_caption_and_recursive_discovery(tmp_path, clips):
    root = tmp_path / "vatex"
    root.mkdir()
    captions = {"Ptf_2VRj-V0_000122_000132": ["a", "b", "c"], "abc_000001_000011": ["d", "e"], "x-y_0_10": ["f"]}
    (root / "ref_captions.json").write_text(json.dumps({k: [f"{c} caption" for c in v] for k, v in captions.items()}))
    (root / "train_list.txt").write_text("Ptf_2VRj-V0_000122_000132\nabc_000001_000011\n")
    (root / "test_list.txt").write_text("x-y_0_10\n")
    _place(clips["sound"], root, "vatex_videos", "part1", "Ptf_2VRj-V0_000122_000132.mp4")
    _place(clips["silent"], root, "vatex_videos", "part2", "deeper", "abc_000001_000011.mp4")
    _place(clips["sound"], root, "x-y_0_10.mp4")
    videos = load_benchmark("vatex", str(root), "train", view="videos", cache_dir=str(tmp_path / "c"))
    assert videos["captions"] == [["a caption", "b caption", "c caption"], ["d caption", "e caption"]]
    assert videos["video"][1].endswith(os.path.join("part2", "deeper", "abc_000001_000011.mp4"))
    pairs = load_benchmark("vatex", str(root), "train", cache_dir=str(tmp_path / "c"))
    assert pairs.num_rows == 5 and pairs["video_id"].count("abc_000001_000011") == 2
    assert load_benchmark("vatex", str(root), "test", cache_dir=str(tmp_path / "c"))["caption"] == ["f caption"]


def test_charades_query_is_the_script(tmp_path, clips):
    root = tmp_path / "charades"
    root.mkdir()
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]
    script = 'A person opens a door, then says "hello".'
    train_rows = [
        ["46GP8", "HR43", "Kitchen", "6", "7", "Yes", script, "door", "A person walks.", "c092 11.90 21.20", "24.83"],
        ["N11GT", "P0MD", "Stairs", "6", "7", "Yes", "A person sits.", "", "", "", "30.04"],
    ]
    _write_csv(root / "Charades_v1_train.csv", header, train_rows)
    test_rows = [["YSKX3", "ZH6I", "Closet", "", "", "Yes", "A person sneezes.", "", "", "", "9.5"]]
    _write_csv(root / "Charades_v1_test.csv", header, test_rows)
    _place(clips["sound"], root, "Charades_v1_480", "46GP8.mp4")
    _place(clips["silent"], root, "Charades_v1_480", "N11GT.mp4")
    _place(clips["sound"], root, "Charades_v1_480", "YSKX3.mp4")
    train = load_benchmark("charades", str(root), "train", cache_dir=str(tmp_path / "c"))
    assert train["caption"] == [script, "A person sits."]
    assert train["length"] == pytest.approx([24.83, 30.04])
    assert load_benchmark("charades", str(root), "test", view="videos", cache_dir=str(tmp_path / "c"))["captions"] == [
        ["A person sneezes."]
    ]


def test_clear_errors(msrvtt_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("kinetics", str(msrvtt_dir), "train")
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_benchmark("msrvtt", str(msrvtt_dir), "validation", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`view`"):
        load_benchmark("msrvtt", str(msrvtt_dir), "train", view="clips", cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_benchmark("msrvtt", str(tmp_path / "nowhere"), "train")
    os.remove(msrvtt_dir / "MSRVTT_data.json")
    with pytest.raises(FileNotFoundError, match="MSRVTT_data.json"):
        load_benchmark("msrvtt", str(msrvtt_dir), "train", cache_dir=str(tmp_path))


def test_index_videos_prefers_mp4(tmp_path, clips):
    _place(clips["webm"], tmp_path, "a", "v.webm")
    _place(clips["sound"], tmp_path, "b", "v.mp4")
    (tmp_path / "notes.txt").write_text("not a video")
    assert index_videos(str(tmp_path)) == {"v": str(tmp_path / "b" / "v.mp4")}


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    from modeling_avigate.data import generate_synthetic_benchmark

    return generate_synthetic_benchmark(str(tmp_path_factory.mktemp("synthetic")), sizes={"train": 8, "test": 6})


def test_export_parquet_round_trips_with_load_dataset(tiny_synthetic, tmp_path):
    folder = export_benchmark_parquet("synthetic", tiny_synthetic, str(tmp_path / "parquet"), cache_dir=str(tmp_path))
    # a private datasets cache: the shared one can hold another export of the same relative layout
    pairs = load_dataset(folder, split="train", cache_dir=str(tmp_path / "hf"))  # `pairs` is the default config
    videos = load_dataset(folder, "videos", split="test", cache_dir=str(tmp_path / "hf"))
    assert pairs.num_rows == 8 and "video_bytes" not in pairs.column_names
    assert videos.num_rows == 6 and all(not os.path.isabs(name) for name in videos["video"])
    with open(os.path.join(tiny_synthetic, "videos", videos[0]["video"]), "rb") as handle:
        assert videos[0]["video_bytes"] == handle.read()


def test_push_benchmark_to_hub_uploads_the_export(tiny_synthetic, tmp_path):
    uploaded = {}

    def upload_folder(**kwargs):
        uploaded.update(kwargs, files=sorted(
            os.path.relpath(os.path.join(root, name), kwargs["folder_path"])
            for root, _, names in os.walk(kwargs["folder_path"]) for name in names
            if name not in kwargs.get("ignore_patterns", [])
        ))
        return "commit"

    with mock.patch("huggingface_hub.HfApi") as api_class:
        api_class.return_value.upload_folder.side_effect = upload_folder
        assert push_benchmark_to_hub("synthetic", tiny_synthetic, "user/synth", cache_dir=str(tmp_path)) == "commit"
    api_class.return_value.create_repo.assert_called_once_with("user/synth", repo_type="dataset", private=True,
                                                               exist_ok=True)
    assert uploaded["repo_id"] == "user/synth" and uploaded["repo_type"] == "dataset"
    assert uploaded["files"] == ["README.md", "pairs/test-00000.parquet", "pairs/train-00000.parquet",
                                 "videos/test-00000.parquet", "videos/train-00000.parquet"]


def _synthetic_with_video_path(tiny_synthetic, tmp_path, video_path: str) -> str:
    """A copy of the synthetic benchmark whose first test annotation names `video_path`."""
    root = shutil.copytree(tiny_synthetic, tmp_path / "data")
    lines = (root / "test.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["video"] = video_path
    (root / "test.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return str(root)


def _opened_paths():
    """Patch `open` to record the real path of every file opened through it (and still open it)."""
    import builtins

    opened, real_open = [], builtins.open

    def recording_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(os.path.realpath(file))
        return real_open(file, *args, **kwargs)

    return opened, mock.patch("builtins.open", recording_open)


@pytest.mark.parametrize("escape", ["absolute", "dotdot"])
def test_annotation_paths_outside_data_dir_are_refused_and_never_read(tiny_synthetic, tmp_path, escape):
    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"private bytes that must not be exported")
    video_path = str(secret) if escape == "absolute" else "../outside/secret.mp4"
    data_dir = _synthetic_with_video_path(tiny_synthetic, tmp_path, video_path)
    opened, patch = _opened_paths()
    with patch, pytest.raises(ValueError, match=rf"avigate_synthetic annotation 1 .*{os.path.basename(video_path)}"):
        export_benchmark_parquet("synthetic", data_dir, str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))
    assert str(secret) not in opened
    exported = [os.path.join(root, name) for root, _, names in os.walk(tmp_path / "export") for name in names]
    assert all(b"private bytes" not in open(path, "rb").read() for path in exported)


def test_parquet_export_refuses_rows_outside_data_dir_even_from_an_unconfined_builder(tiny_synthetic, tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"private bytes")
    data_dir = _synthetic_with_video_path(tiny_synthetic, tmp_path, str(secret))
    opened, patch = _opened_paths()
    # A builder that does not confine its paths (say, a third-party one): the export must still refuse.
    unconfined = mock.patch("modeling_avigate.data.builders.path_inside",
                            lambda root, path, source: os.path.join(root, path))
    with patch, unconfined, pytest.raises(ValueError, match=r"test video .* leaves the data folder"):
        export_benchmark_parquet("synthetic", data_dir, str(tmp_path / "export"), splits=["test"],
                                 cache_dir=str(tmp_path / "cache"))
    assert str(secret) not in opened


def test_export_never_overwrites_a_foreign_folder_or_the_data(tiny_synthetic, tmp_path):
    from modeling_avigate.folders import FolderOwnershipError

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("my own readme")
    with pytest.raises(FolderOwnershipError, match="notes: it is a folder this package did not create"):
        export_benchmark_parquet("synthetic", tiny_synthetic, str(tmp_path / "notes"), cache_dir=str(tmp_path))
    assert os.listdir(tmp_path / "notes") == ["README.md"]
    assert (tmp_path / "notes" / "README.md").read_text() == "my own readme"
    for out, relation in ((tiny_synthetic, "is"), (os.path.join(tiny_synthetic, "export"), "is inside"),
                          (os.path.dirname(tiny_synthetic), "contains")):
        with pytest.raises(FolderOwnershipError, match=f"refusing export folder .*: it {relation} the input"):
            export_benchmark_parquet("synthetic", tiny_synthetic, out, cache_dir=str(tmp_path))
    # An earlier export is replaced.
    export_benchmark_parquet("synthetic", tiny_synthetic, str(tmp_path / "export"), splits=["test"],
                             cache_dir=str(tmp_path))
    export_benchmark_parquet("synthetic", tiny_synthetic, str(tmp_path / "export"), cache_dir=str(tmp_path))
    assert load_dataset(str(tmp_path / "export"), split="train").num_rows == 8
