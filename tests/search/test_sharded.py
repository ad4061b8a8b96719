"""Sharded builds: a long file's segments cut across processes (each decoding only its slice), the merge equal to a
one-process build, and updates of an existing index that embed only new or changed files. The processes are
simulated in this one (plan, shares, merge called in turn); `tests/cli/test_cli.py` runs two real ones."""

import os
import shutil

import av
import numpy as np
import pytest
import torch

from modeling_avigate.embedding import EmbeddingOptions, decode_settings
from modeling_avigate.processors import decode_segments
from modeling_avigate.search import VideoIndex
from modeling_avigate.search.sharded import ShardPlan, embed_share, finish_update, plan_shares, plan_update

from builders import tiny_processor_and_model
from media import tone, write_test_video


FPS = 8
LONG_SECONDS = 12


def segmented(**overrides) -> EmbeddingOptions:
    return EmbeddingOptions(progress=False, segment_seconds=1.0, batch_size=3, **overrides)


def write_long(path: str, seconds: int = LONG_SECONDS, sample_rate: int = 16000) -> str:
    """`seconds` of moving pattern with a keyframe every 2 s and a different tone every second (AAC)."""
    sound = np.concatenate([tone(150.0 * (1 + second % 5), 1.0, sample_rate) for second in range(seconds)])
    return write_test_video(path, num_frames=FPS * seconds, fps=FPS, size=(48, 32), audio=sound,
                            sample_rate=sample_rate, gop_size=2 * FPS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    processor, model = tiny_processor_and_model(root)
    folder = root / "videos"
    folder.mkdir()
    long_file = write_long(str(folder / "long.mp4"))
    shorts = [write_test_video(str(folder / f"clip-{n}.mp4"), num_frames=6, fps=FPS, size=(40, 32),
                               audio=tone(300.0 + 200 * n, 0.75, 16000) if n != 1 else None) for n in range(3)]
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return {"root": root, "processor": processor, "model": model, "folder": folder, "long": long_file,
            "shorts": shorts}


def simulated_update(model, processor, index, videos, options, num_processes, tmp_path, prune=False):
    """What `build_sharded` does with `num_processes` processes, in this one: plan (written and read back as the
    processes read it), each process's shard (saved and loaded), merge. Returns the plan."""
    plan_update(index, videos, options, prune, num_processes).save(str(tmp_path / "plan.json"))
    plan = ShardPlan.load(str(tmp_path / "plan.json"))
    shards = []
    for rank in range(num_processes):
        embed_share(model, processor, plan, rank, options).save(tmp_path / f"shard-{rank}")
        shards.append(VideoIndex.load(tmp_path / f"shard-{rank}"))
    finish_update(index, shards, plan)
    return plan


def assert_same_index(actual: VideoIndex, expected: VideoIndex) -> None:
    assert actual.entries == expected.entries
    assert actual.failures == expected.failures
    torch.testing.assert_close(actual.frame_embeds.float(), expected.frame_embeds.float(), atol=2e-3, rtol=0)
    torch.testing.assert_close(actual.video_embeds, expected.video_embeds, atol=2e-3, rtol=0)
    assert torch.equal(actual.video_mask, expected.video_mask) and torch.equal(actual.has_audio, expected.has_audio)
    torch.testing.assert_close(actual.previews.frame_times, expected.previews.frame_times, rtol=0, atol=0,
                               equal_nan=True)
    assert actual.previews.posters == expected.previews.posters


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_a_slice_of_segments_decodes_as_the_same_segments_of_a_whole_decode(setup, tmp_path, sample_rate):
    """Frames, times, posters and sound (also resampled from 48 kHz) exactly as the whole file's decode gives them."""
    path = setup["long"] if sample_rate == 16000 else write_long(str(tmp_path / "long.mp4"), sample_rate=sample_rate)
    settings = decode_settings(setup["processor"], segmented())
    whole = list(decode_segments(path, settings))
    assert len(whole) == LONG_SECONDS and {segment.num_segments for segment in whole} == {LONG_SECONDS}
    pieces = [list(decode_segments(path, settings, piece)) for piece in (slice(0, 5), slice(5, 9), slice(9, None))]
    assert [[segment.num_segments for segment in piece] for piece in pieces] == [[5] * 5, [4] * 4, [3] * 3]
    for expected, actual in zip(whole, [segment for piece in pieces for segment in piece]):
        assert (actual.index, actual.start, actual.end, actual.duration) == (expected.index, expected.start,
                                                                             expected.end, expected.duration)
        assert np.array_equal(actual.frame_times, expected.frame_times)
        assert np.array_equal(actual.frames, expected.frames) and np.array_equal(actual.poster, expected.poster)
        assert np.array_equal(actual.audio, expected.audio)
    assert list(decode_segments(path, settings, slice(LONG_SECONDS, None))) == []


def test_plan_shares_cuts_long_files_into_contiguous_pieces_and_balances_segments():
    counts = {**{f"clip-{n}.mp4": 1 + n % 4 for n in range(40)}, "film.mp4": 720, "half.mp4": 150}
    shares = plan_shares(counts, 3)
    loads = [sum((stop if stop is not None else counts[path]) - first for path, first, stop in share)
             for share in shares]
    assert sum(loads) == sum(counts.values()) and max(loads) - min(loads) <= 1
    order = list(counts)
    for share in shares:
        paths = [path for path, _, _ in share]
        assert len(paths) == len(set(paths))  # one piece of a file per process: each opens it once
        assert paths == sorted(paths, key=order.index)
    film = [(first, stop) for share in shares for path, first, stop in share if path == "film.mp4"]
    assert film == [(0, 324), (324, 647), (647, None)]  # contiguous, the last to the file's end
    assert all(first == 0 and stop is None for share in shares for path, first, stop in share if path != "film.mp4")
    assert plan_shares({"a.mp4": 1}, 2) == [[("a.mp4", 0, None)], []]


def test_three_simulated_processes_build_the_index_one_process_builds(setup, tmp_path, monkeypatch):
    model, processor, options = setup["model"], setup["processor"], segmented()
    single = VideoIndex.build(model, processor, str(setup["folder"]), options)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda file, *args, **kwargs: opened.append(os.fspath(file))
                        or real_open(file, *args, **kwargs))
    sharded = VideoIndex.empty(model, processor, options)
    plan = simulated_update(model, processor, sharded, str(setup["folder"]), options, 3, tmp_path)
    long_pieces = [piece for share in plan.shares for piece in share if piece[0] == setup["long"]]
    assert len(long_pieces) == 3  # 12 + 3 + 1 segments over 3 processes: the long file is cut in three
    assert_same_index(sharded, single)
    assert [os.path.basename(failure["path"]) for failure in sharded.failures] == ["broken.mp4"]
    # The plan reads each header once, then each process opens each of its files once.
    assert opened.count(setup["long"]) == 1 + 3 and all(opened.count(path) == 2 for path in setup["shorts"])


@pytest.mark.parametrize("prune", [False, True])
def test_a_sharded_update_embeds_only_new_and_changed_files_as_one_process_does(setup, tmp_path, prune):
    model, processor, options = setup["model"], setup["processor"], segmented()
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in [setup["long"], *setup["shorts"][:2]]:
        shutil.copy(path, folder)
    VideoIndex.build(model, processor, str(folder), options).save(tmp_path / "before")
    shutil.copy(setup["shorts"][2], folder / "new.mp4")
    write_long(str(folder / "clip-0.mp4"), seconds=3)  # changed in place
    os.remove(folder / "clip-1.mp4")
    one_process = VideoIndex.load(tmp_path / "before", model=model, processor=processor)
    embedded = one_process.add(str(folder), options, prune=prune)
    sharded = VideoIndex.load(tmp_path / "before", model=model, processor=processor)
    plan = simulated_update(model, processor, sharded, str(folder), options, 2, tmp_path, prune=prune)
    assert plan.files == embedded == [str(folder / "clip-0.mp4"), str(folder / "new.mp4")]
    assert_same_index(sharded, one_process)
    before = VideoIndex.load(tmp_path / "before")
    unchanged = [[i for i, entry in enumerate(index.entries) if entry["path"] == str(folder / "long.mp4")]
                 for index in (sharded, before)]
    assert torch.equal(sharded.frame_embeds[unchanged[0]], before.frame_embeds[unchanged[1]])  # never re-embedded
    assert (str(folder / "clip-1.mp4") in sharded.files) is not prune
    # Nothing changed since: a second sharded update plans nothing and changes nothing.
    (tmp_path / "again").mkdir()
    again = simulated_update(model, processor, sharded, str(folder), options, 2, tmp_path / "again", prune=prune)
    assert again.files == [] and again.shares == [[], []]
    assert_same_index(sharded, one_process)
