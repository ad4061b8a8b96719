"""Long files as timed segments: each segment embedded as the same span cut into a file of its own, the right moment
found in a long file, one open per file, and incremental updates that embed only what changed (also after a run
that was stopped midway)."""

import os
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from modeling_avigate.cli import main
from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.search import VideoIndex, build_sharded

from media import pattern_frame, tone
from builders import tiny_processor_and_model


FPS = 8
RATE = 16000
CLIP_SECONDS = 1.0


def write_lossless(path: str, frames: list[np.ndarray], audio: np.ndarray | None) -> str:
    """Frames at `FPS` in lossless h264 (qp 0) and the sound as FLAC in Matroska: a span cut from such a file and
    written again decodes to the same pixels and samples, so two files of one span differ only in their timeline."""
    height, width = frames[0].shape[:2]
    with av.open(path, mode="w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"qp": "0"})
        video.width, video.height, video.pix_fmt = width, height, "yuv444p"
        video.time_base = Fraction(1, FPS)
        if audio is not None:
            sound = container.add_stream("flac", rate=RATE, layout="mono")
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            resampler = av.AudioResampler(format=sound.codec_context.format, layout="mono", rate=RATE,
                                          frame_size=sound.codec_context.frame_size or None)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None]), format="flt", layout="mono")
            frame.sample_rate, frame.pts = RATE, 0
            for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
                container.mux(sound.encode(resampled))
            container.mux(sound.encode(None))
    return path


def clip_content(number: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames and sound of benchmark-like clip `number`: a moving pattern shifted per clip and its own tone."""
    frames = [np.roll(pattern_frame(8 * number + i, 48, 32), 11 * number, axis=1) for i in range(int(FPS * CLIP_SECONDS))]
    return frames, tone(200.0 * (number + 1), CLIP_SECONDS, RATE)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("segments")
    processor, model = tiny_processor_and_model(root)
    clips = [clip_content(number) for number in range(8)]
    long_file = write_lossless(str(root / "long.mkv"), [frame for frames, _ in clips for frame in frames],
                               np.concatenate([audio for _, audio in clips]))
    cut_files = [write_lossless(str(root / f"cut-{number}.mkv"), *clip) for number, clip in enumerate(clips)]
    return {"root": root, "processor": processor, "model": model, "long": long_file, "cuts": cut_files}


def segmented(**overrides) -> EmbeddingOptions:
    return EmbeddingOptions(progress=False, segment_seconds=CLIP_SECONDS, batch_size=4, **overrides)


def test_each_segment_is_embedded_as_the_same_span_cut_into_its_own_file(setup):
    model, processor = setup["model"], setup["processor"]
    index = VideoIndex.build(model, processor, [setup["long"]], segmented())
    cuts = VideoIndex.build(model, processor, setup["cuts"], EmbeddingOptions(progress=False))
    assert [(entry["start"], entry["end"]) for entry in index.entries] == [(i, i + 1.0) for i in range(8)]
    assert {entry["duration"] for entry in index.entries} == {8.0}
    assert torch.equal(index.video_mask, cuts.video_mask) and torch.equal(index.has_audio, cuts.has_audio)
    torch.testing.assert_close(index.frame_embeds.float(), cuts.frame_embeds.float(), atol=2e-3, rtol=0)
    torch.testing.assert_close(index.previews.frame_times - torch.arange(8.0)[:, None], cuts.previews.frame_times)
    assert all(index.previews.posters)


def test_the_right_moment_of_a_long_file_is_found(setup):
    """Each clip's own embedding as the query: the segment at that clip's time must rank first (R@1) and within
    the top five (recall@5) among the long file's segments."""
    model, processor = setup["model"], setup["processor"]
    index = VideoIndex.build(model, processor, [setup["long"]], segmented(stride_seconds=0.5))
    assert len(index) == 15  # 8 s in 1 s segments every 0.5 s; the last starts at 7 s
    queries = VideoIndex.build(model, processor, setup["cuts"], EmbeddingOptions(progress=False)).video_embeds
    results = index.search(queries, k=5, per_file=False)
    right = [[hit.start == number for hit in hits] for number, hits in enumerate(results)]
    assert sum(hits[0] for hits in right) / len(right) == 1.0  # R@1
    assert sum(any(hits) for hits in right) / len(right) == 1.0  # recall@5
    grouped = index.search(queries[:1], k=1)[0]
    assert len(grouped) == 1 and grouped[0].start == 0.0 and grouped[0].path == setup["long"]
    others = grouped[0].others  # the file's other segments among the best four, best first
    assert 1 <= len(others) <= 3 and all(other.path == setup["long"] for other in others)
    assert [other.score for other in others] == sorted((other.score for other in others), reverse=True)
    assert all(other.score <= grouped[0].score for other in others)


def test_each_file_is_opened_once_per_indexing_run(setup, monkeypatch):
    opened = []
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    VideoIndex.build(setup["model"], setup["processor"], [setup["long"], *setup["cuts"][:2]], segmented())
    assert sorted(opened) == sorted([setup["long"], *setup["cuts"][:2]])


def test_rerunning_embeds_only_new_and_changed_files_and_prunes_only_when_asked(setup, tmp_path):
    model, processor = setup["model"], setup["processor"]
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in setup["cuts"][:3]:
        shutil.copy(path, folder)
    out = tmp_path / "gallery"
    first = build_sharded(model, processor, str(folder), out, segmented())
    assert len(first.files) == 3
    for path in setup["cuts"][3:5]:
        shutil.copy(path, folder)  # two new files
    shutil.copy(setup["cuts"][5], folder / "cut-1.mkv")  # one changed in place
    os.remove(folder / "cut-2.mkv")  # one deleted
    index = VideoIndex.load(out, model=model, processor=processor)
    embedded = index.add(str(folder), segmented())
    assert sorted(os.path.basename(path) for path in embedded) == ["cut-1.mkv", "cut-3.mkv", "cut-4.mkv"]
    unchanged = [i for i, entry in enumerate(first.entries) if entry["path"].endswith("cut-0.mkv")]
    kept = [i for i, entry in enumerate(index.entries) if entry["path"].endswith("cut-0.mkv")]
    assert torch.equal(index.frame_embeds[kept], first.frame_embeds[unchanged])  # never rebuilt
    assert str(folder / "cut-2.mkv") in index.files  # deleted files stay without prune
    assert index.add(str(folder), segmented()) == []
    assert index.add(str(folder), segmented(), prune=True) == []
    assert sorted(os.path.basename(path) for path in index.files) == ["cut-0.mkv", "cut-1.mkv", "cut-3.mkv",
                                                                       "cut-4.mkv"]
    changed = index.entries[index.paths.index(str(folder / "cut-1.mkv"))]
    assert changed["size"] == os.path.getsize(setup["cuts"][5])


def test_a_stopped_run_keeps_every_finished_file_and_the_rerun_embeds_only_the_rest(setup, tmp_path, monkeypatch):
    from modeling_avigate.search import updates

    model, processor = setup["model"], setup["processor"]
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in setup["cuts"][:4]:
        shutil.copy(path, folder)
    real_embed_files = updates.embed_files

    def killed_after_two(*args, **kwargs):
        for number, item in enumerate(real_embed_files(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt  # as a kill between two files: what was saved must survive
            yield item

    monkeypatch.setattr(updates, "embed_files", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_sharded(model, processor, str(folder), tmp_path / "gallery", segmented(), checkpoint_seconds=0)
    assert len(VideoIndex.load(tmp_path / "gallery").files) == 2
    monkeypatch.setattr(updates, "embed_files", real_embed_files)
    index = build_sharded(model, processor, str(folder), tmp_path / "gallery", segmented())
    assert len(index.files) == 4
    saved = VideoIndex.load(tmp_path / "gallery")
    assert saved.files == index.files and len(saved) == len(index)


def test_cli_indexes_segments_and_prints_file_span_and_score(setup, tmp_path, capsys):
    model, processor = setup["model"], setup["processor"]
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(setup["long"], folder)
    common = ["--model", str(tmp_path / "model"), "--num-workers", "0"]
    assert main(["index", str(folder), "--out", str(tmp_path / "gallery"), "--segment-seconds", "2", *common]) == 0
    assert capsys.readouterr().out.startswith("indexed 1 videos (4 segments)")
    assert main(["search", str(tmp_path / "gallery"), "a dog barks at a car", "-k", "1", "--segments"]) == 0
    line = capsys.readouterr().out.splitlines()[0].split()
    assert line[0] == "1" and line[1] == str(folder / "long.mkv")
    start, end = line[2].split("–")
    assert start in ("0:00.0", "0:02.0", "0:04.0", "0:06.0") and float(end.split(":")[1]) - float(start.split(":")[1]) == 2
    float(line[3])


KILLED_BUILD = """
import sys, time
from modeling_avigate import AvigateModel, AvigateProcessor
from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.search import build_sharded, updates

real_embed_files = updates.embed_files


def slowly(*args, **kwargs):  # one file a second, so the parent can kill the run between two of them
    for item in real_embed_files(*args, **kwargs):
        yield item
        time.sleep(1.0)


updates.embed_files = slowly
model, processor = AvigateModel.from_pretrained(sys.argv[1]), AvigateProcessor.from_pretrained(sys.argv[1])
build_sharded(model, processor, sys.argv[2], sys.argv[3], EmbeddingOptions(progress=False, segment_seconds=1.0),
              checkpoint_seconds=0)
"""


@pytest.mark.slow
def test_kill_9_mid_build_then_rerun_re_embeds_nothing_finished(setup, tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    from modeling_avigate import AvigateModel, AvigateProcessor

    setup["model"].save_pretrained(tmp_path / "model")
    setup["processor"].save_pretrained(tmp_path / "model")
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in setup["cuts"]:
        shutil.copy(path, folder)
    out = tmp_path / "gallery"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "model"), str(folder), str(out)],
                             env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 240
    saved = []
    while len(saved) < 2:
        assert child.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
        try:
            saved = json.loads((out / "index.json").read_text())["videos"]
        except (OSError, ValueError):  # not written yet
            time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = {entry["path"] for entry in VideoIndex.load(out).entries}
    assert 2 <= len(finished) < len(setup["cuts"])
    model = AvigateModel.from_pretrained(tmp_path / "model")
    index = VideoIndex.load(out, model=model, processor=AvigateProcessor.from_pretrained(tmp_path / "model"))
    embedded = index.add(str(folder), segmented())
    assert not finished & set(embedded) and len(finished) + len(embedded) == len(setup["cuts"])
    assert len(index.files) == len(setup["cuts"])


@pytest.mark.slow
def test_decoding_in_isolated_workers_gives_the_same_index_and_lists_bad_files(setup, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    paths = [setup["long"], str(broken), setup["cuts"][0]]
    model, processor = setup["model"], setup["processor"]
    in_process = VideoIndex.build(model, processor, paths, segmented())
    isolated = VideoIndex.build(model, processor, paths, segmented(num_workers=2))
    assert isolated.entries == in_process.entries and len(isolated.files) == 2
    assert torch.equal(isolated.frame_embeds, in_process.frame_embeds)
    assert [failure["path"] for failure in isolated.failures] == [str(broken)]
    assert "cannot be read as media" in isolated.failures[0]["error"]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_the_first_stage_follows_added_and_removed_files(setup, kind):
    pytest.importorskip("faiss")
    model, processor = setup["model"], setup["processor"]
    index = VideoIndex.build(model, processor, setup["cuts"][:3], segmented(), first_stage=kind, shortlist_size=64)
    stage = index.first_stage
    index.add(setup["cuts"][:5], segmented())
    assert index.first_stage is stage and stage.ntotal == len(index) == 5  # updated in place, not rebuilt
    index.remove([setup["cuts"][1]])
    assert index.first_stage.ntotal == len(index) == 4
    assert (index.first_stage is stage) == (kind == "flat")  # flat drops the vector; hnsw ids cannot be renumbered
    queries = index.video_embeds
    two_stage = index.search(queries, k=4, per_file=False)
    exact = index.search(queries, k=4, per_file=False, exact=True)
    assert [[hit.position for hit in hits] for hits in two_stage] == [[hit.position for hit in hits] for hits in exact]
