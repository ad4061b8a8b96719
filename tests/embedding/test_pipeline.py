"""The one video pipeline and embedding path: training, evaluation and the index embed alike; unusable files are
skipped and listed (or stop the run with strict), in the library, the training caches and the CLI; other errors
surface."""

import logging
import os
import shutil

import pytest
import torch
from media import write_bad_files

from modeling_avigate.cli import main
from modeling_avigate.embedding import (
    EmbeddingOptions,
    embed_gallery,
    embed_texts,
    embed_videos,
    prepare_feature_caches,
    video_batches,
    video_features,
)
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.pipeline import HardNegativeSampler, TrainingPairs, collate_training_pairs
from modeling_avigate.processors import MediaError
from modeling_avigate.search import VideoIndex

from builders import run_train, tiny_processor_and_model, write_clips


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    processor, model = tiny_processor_and_model(root)
    paths = write_clips(str(root / "videos"), 5)
    bad = write_bad_files(str(root / "bad"), paths[0])
    return {"root": root, "processor": processor, "model": model, "paths": paths, "bad": bad}


def test_training_evaluation_and_index_embed_the_same_videos_alike(setup):
    model, processor, paths = setup["model"], setup["processor"], setup["paths"]
    rows = {"video_id": [f"v{i}" for i in range(len(paths))], "video": paths,
            "caption": ["a dog barks at a car"] * len(paths), "captions": [["a dog barks at a car"]] * len(paths)}
    evaluated = embed_gallery(model, processor, rows, EmbeddingOptions(batch_size=2, progress=False))
    in_workers = embed_gallery(model, processor, rows, EmbeddingOptions(batch_size=3, num_workers=2, progress=False))
    torch.testing.assert_close(in_workers.frame_embeds, evaluated.frame_embeds)
    index = VideoIndex.build(model, processor, paths, EmbeddingOptions(batch_size=4, progress=False))
    torch.testing.assert_close(index.frame_embeds.float(), evaluated.frame_embeds, atol=2e-3, rtol=0)
    assert torch.equal(index.has_audio, evaluated.has_audio)
    batch = collate_training_pairs(processor)([TrainingPairs(rows, processor)[i] for i in range(len(paths))])
    with torch.no_grad():
        outputs = model(**batch)
    torch.testing.assert_close(outputs.frame_embeds, evaluated.frame_embeds)
    torch.testing.assert_close(outputs.video_embeds, evaluated.video_embeds)
    torch.testing.assert_close(outputs.attn_gates, evaluated.attn_gates)
    torch.testing.assert_close(outputs.text_embeds, embed_texts(model, processor, rows["caption"]))
    torch.testing.assert_close(index.encode_text(rows["caption"][:1]), outputs.text_embeds[:1])
    assert evaluated.video_ids == rows["video_id"] and evaluated.paths == paths and evaluated.skipped == []
    assert evaluated.positions.tolist() == list(range(len(paths)))


def test_evaluation_skips_and_lists_unusable_videos_or_stops_with_strict(setup):
    model, processor, paths = setup["model"], setup["processor"], setup["paths"]
    bad = setup["bad"]["truncated.mp4"]
    rows = {"video_id": ["a", "bad", "b"], "video": [paths[0], bad, paths[1]],
            "captions": [["a dog barks at a car"], ["a woman sings"], ["blue square"]]}
    result = evaluate_retrieval(model, processor, rows, batch_size=2, progress=False)
    assert result["num_videos"] == 2 and result["num_captions"] == 2 and result["num_skipped_videos"] == 1
    assert [item["path"] for item in result["skipped_videos"]] == [bad]
    with pytest.raises(MediaError, match="truncated.mp4: cannot be read as media"):
        evaluate_retrieval(model, processor, rows, batch_size=2, progress=False, strict=True)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_list_skipped_files_and_strict_raises_the_media_error_in_the_main_process(setup, num_workers):
    processor, paths, bad = setup["processor"], setup["paths"], setup["bad"]
    videos = [paths[0], bad["fifo.mp4"], paths[1], bad["text.mp4"]]
    options = EmbeddingOptions(batch_size=2, num_workers=num_workers, progress=False)
    batches = list(video_batches(processor, videos, options))
    assert [batch.positions.tolist() for batch in batches] == [[0], [2]]
    assert [batch.paths for batch in batches] == [[paths[0]], [paths[1]]]
    assert [(item.position, os.path.basename(item.path)) for batch in batches for item in batch.skipped] == [
        (1, "fifo.mp4"), (3, "text.mp4")]
    assert batches[0].inputs["pixel_values"].shape == (1, processor.video_processor.num_frames, 3, 32, 32)
    with pytest.raises(MediaError, match=r"fifo.mp4: not a regular file"):
        list(video_batches(processor, videos, EmbeddingOptions(batch_size=2, num_workers=num_workers, progress=False,
                                                               strict=True)))


def test_errors_that_are_not_media_errors_surface(setup, monkeypatch):
    processor = setup["processor"]

    def broken(video, *args, **kwargs):
        raise TypeError("a bug in the decoder")

    monkeypatch.setattr(processor, "process_video", broken)
    with pytest.raises(TypeError, match="a bug in the decoder"):
        next(embed_videos(setup["model"], processor, setup["paths"][:1], EmbeddingOptions(progress=False)))


def test_training_caches_skip_and_list_unusable_files_and_training_drops_their_pairs(setup, tmp_path, caplog):
    model, processor, paths, bad = setup["model"], setup["processor"], setup["paths"], setup["bad"]
    views = [{"video_id": ["good0", "empty", "good1", "dangling"],
              "video": [paths[0], bad["empty.mp4"], paths[1], bad["dangling.mp4"]]}]
    with caplog.at_level(logging.WARNING, logger="modeling_avigate.pipeline"):  # where skipped files are reported
        caches = prepare_feature_caches(model, processor, views, frame_cache=str(tmp_path / "frames"),
                                        audio_cache=str(tmp_path / "audio"), batch_size=2)
    assert set(caches["frames"].rows) == set(caches["audio"].rows) == {"good0", "good1"}
    assert "skipped 2 of 4 videos" in caplog.text
    assert "empty.mp4: the file is empty" in caplog.text and "dangling.mp4: dangling symbolic link" in caplog.text
    pairs = {**views[0], "caption": ["one", "two", "three", "four"]}
    dataset = TrainingPairs(pairs, processor, frame_cache=caches["frames"], audio_cache=caches["audio"])
    assert len(dataset) == 2 and [dataset[i]["text"] for i in range(2)] == ["one", "three"]
    with pytest.raises(MediaError, match="empty.mp4: the file is empty"):
        prepare_feature_caches(model, processor, views, frame_cache=str(tmp_path / "strict"), strict=True)


def test_caches_are_rebuilt_when_a_video_is_rewritten_in_place(setup, tmp_path):
    """A regenerated benchmark keeps its file names: caches keyed only on settings served the old frames silently."""
    import shutil

    model, processor, paths = setup["model"], setup["processor"], setup["paths"]
    video = str(tmp_path / "clip.mp4")
    shutil.copyfile(paths[0], video)
    views = [{"video_id": ["clip"], "video": [video]}]
    kwargs = {"frame_cache": str(tmp_path / "frames"), "audio_cache": str(tmp_path / "audio")}
    before = prepare_feature_caches(model, processor, views, **kwargs)
    reopened = prepare_feature_caches(model, processor, views, open_only=True, **kwargs)  # unchanged: reused as is
    assert reopened["frames"].fingerprint == before["frames"].fingerprint
    old_frames = before["frames"].get("clip")["pixel_values"]
    old_audio = before["audio"].get("clip")["audio_hidden_states"]
    shutil.copyfile(paths[1], video)  # same path and id, other pixels and sound
    with pytest.raises(ValueError):
        prepare_feature_caches(model, processor, views, open_only=True, **kwargs)
    after = prepare_feature_caches(model, processor, views, **kwargs)
    expected = prepare_feature_caches(model, processor, [{"video_id": ["clip"], "video": [paths[1]]}],
                                      frame_cache=str(tmp_path / "fresh_frames"))["frames"].get("clip")
    assert not torch.equal(after["frames"].get("clip")["pixel_values"], old_frames)
    assert torch.equal(after["frames"].get("clip")["pixel_values"], expected["pixel_values"])
    assert not torch.equal(after["audio"].get("clip")["audio_hidden_states"], old_audio)


def test_index_cli_skips_and_lists_bad_files_and_strict_stops_with_one_line(setup, tmp_path, capsys, caplog):
    model, processor, paths, bad = setup["model"], setup["processor"], setup["paths"], setup["bad"]
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in paths[:2]:
        os.symlink(path, folder / os.path.basename(path))
    # The folder scan picks files by extension: the audio-only file goes in as .mp4, the dangling link is made here.
    targets = {name: bad[name] for name in ("empty.mp4", "text.mp4", "truncated.mp4", "flipped.mp4", "fifo.mp4")}
    targets.update({"audio_only.mp4": bad["audio_only.m4a"], "dangling.mp4": str(tmp_path / "gone.mp4")})
    for name, target in targets.items():
        os.symlink(target, folder / name)
    listed = sorted(targets)
    common = ["index", str(folder), "--model", str(tmp_path / "model"), "--num-workers", "0"]
    status = main([*common, "--out", str(tmp_path / "gallery")])
    out, err = capsys.readouterr()
    assert status == 0 and "Traceback" not in err
    assert out.startswith("indexed 2 videos") and f"skipped {len(listed)} unreadable files (listed above)" in out
    for name in listed:  # listed once, by the indexing's warning, not again by the command
        assert caplog.text.count(f"{folder / name}: ") == 1 and str(folder / name) not in out + err, name
    assert len(VideoIndex.load(tmp_path / "gallery")) == 2

    status = main([*common, "--out", str(tmp_path / "strict-gallery"), "--strict"])
    out, err = capsys.readouterr()
    assert status == 1 and not os.path.exists(tmp_path / "strict-gallery")
    # stderr also holds the loading and indexing progress bars; the error is one line, the last, no traceback.
    assert "Traceback" not in err and err.count("error:") == 1
    assert err.strip().splitlines()[-1] == (
        f"avigate index: error: {folder / 'audio_only.mp4'}: the file has no video stream")


@pytest.mark.slow
def test_training_script_skips_lists_and_finishes_or_stops_with_strict(synthetic_dir, tmp_path):
    data = tmp_path / "synthetic"
    shutil.copytree(synthetic_dir, data)
    broken = data / "videos" / "train_0003.mp4"
    broken.write_text("not a video")
    result = run_train(data, tmp_path / "run" / "out", "--epochs", "1")
    assert "skipped 1 of 32 videos" in result.output
    assert f"{broken}: cannot be read as media" in result.output
    assert os.path.exists(tmp_path / "run" / "out" / "metrics.json")
    strict = run_train(data, tmp_path / "strict" / "out", "--epochs", "1", "--strict", "true", check=False)
    assert strict.returncode != 0
    assert f"train.py: {broken}: cannot be read as media" in strict.output
    assert "Traceback" not in strict.output


# -- hard-negative batches ------------------------------------------------------------------------------------------


def looks(count: int, seed: int = 0) -> list[dict]:
    """`count` clips with random colour, background and shape (uneven group sizes, so leftovers occur)."""
    generator = torch.Generator().manual_seed(seed)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=generator))]  # noqa: E731
    return [{"color": pick("rgby"), "background": pick("kw"), "shape": pick("cst")} for _ in range(count)]


def keys_of(clips: list[dict], *columns: str) -> list[tuple]:
    return [tuple(clip[column] for column in columns) for clip in clips]


def test_hard_negative_order_covers_every_item_once_and_whole_groups_share_their_keys():
    clips = looks(203)
    coarse, fine = keys_of(clips, "color", "background"), keys_of(clips, "color", "background", "shape")
    sampler = HardNegativeSampler([(coarse, 8), (fine, 4)], seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(clips))) and len(sampler) == len(clips)
    # Whole groups come first: count them from the group sizes, then check each aligned run.
    whole_groups = sum(keys.count(key) // 8 for keys in [coarse] for key in set(keys))
    runs_of_8 = [order[start : start + 8] for start in range(0, 8 * whole_groups, 8)]
    assert runs_of_8 and all(len({coarse[i] for i in run}) == 1 for run in runs_of_8)
    # Within a coarse group, each aligned run of 4 made of one fine key's items shares the shape too.
    fine_runs = [run[half : half + 4] for run in runs_of_8 for half in (0, 4)]
    sharing = [len({fine[i] for i in run}) == 1 for run in fine_runs]
    assert sum(sharing) >= len(fine_runs) // 2, "most runs of 4 should be one shape's items"


def test_hard_negative_order_is_reshuffled_each_epoch_and_reproducible():
    keys = keys_of(looks(64), "color")
    first, again = HardNegativeSampler([(keys, 4)], seed=1), HardNegativeSampler([(keys, 4)], seed=1)
    epoch0 = list(first)
    first.set_epoch(1)
    again.set_epoch(1)
    assert list(first) == list(again) != epoch0
    assert list(HardNegativeSampler([(keys, 4)], seed=2)) != epoch0


@pytest.mark.parametrize("levels, message", [
    ([(["a", "b"], 3), (["a", "b"], 2)], "each a multiple of the next"),
    ([(["a", "b"], 0)], "positive"),
    ([(["a", "b"], 2), (["a"], 1)], "one key per item"),
])
def test_hard_negative_sampler_rejects_inconsistent_levels(levels, message):
    with pytest.raises(ValueError, match=message):
        HardNegativeSampler(levels)


class PairColumns:
    """The one method of `TrainingPairs` that the training script's sampler reads."""

    def __init__(self, clips: list[dict]):
        self.clips = clips

    def column_values(self, columns):
        missing = [name for name in columns if name not in self.clips[0]]
        if missing:
            raise ValueError(f"{missing} are not columns of the training pairs")
        return keys_of(self.clips, *columns)


def test_training_script_builds_nested_groups_and_names_what_is_wrong():
    from modeling_avigate.training import hard_negative_sampler

    pairs = PairColumns(looks(40))
    sampler = hard_negative_sampler(pairs, ["color,background:8", "shape:4"], per_process=16, seed=0)
    assert [size for _, size in sampler.levels] == [8, 4]
    assert sampler.levels[1][0] == keys_of(pairs.clips, "color", "background", "shape")
    assert hard_negative_sampler(pairs, None, per_process=16, seed=0) is None
    for groups, message in [
        (["color:8"], "must divide the batch per process \\(12\\)"),
        (["color"], "is not COLUMN"),
        (["colour:4"], "not columns of the training pairs"),
        (["color:4", "shape:8"], "multiple of the next"),
    ]:
        with pytest.raises(SystemExit, match=message):
            hard_negative_sampler(pairs, groups, per_process=12, seed=0)


@pytest.mark.parametrize("has_audio", [[True, False, True], [False, False, False], [True, True, True]])
def test_video_features_runs_the_ast_only_on_videos_with_sound_and_embeds_them_as_the_model_does(has_audio):
    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.testing_utils import tiny_config_kwargs

    torch.manual_seed(0)
    model = AvigateModel(AvigateConfig(**tiny_config_kwargs())).eval()
    inputs = {"pixel_values": torch.randn(3, 3, 3, 32, 32), "video_mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]]),
              "input_values": torch.randn(3, 1024, 128), "has_audio": torch.tensor(has_audio)}
    ast_batch_sizes = []
    model.audio_model.register_forward_hook(lambda module, args, kwargs, output: ast_batch_sizes.append(
        kwargs["input_values"].shape[0]), with_kwargs=True)
    with torch.no_grad():
        reference = model.get_video_features(**inputs)
        ast_batch_sizes.clear()
        skipped = video_features(model, inputs)
    assert ast_batch_sizes == ([sum(has_audio)] if any(has_audio) else [])
    for name in ("last_hidden_state", "pooler_output", "attn_gates", "ffn_gates"):
        torch.testing.assert_close(getattr(skipped, name), getattr(reference, name), rtol=1e-5, atol=1e-6)
    assert skipped.attn_gates[~torch.tensor(has_audio)].eq(0).all()


def test_video_features_runs_the_ast_on_every_video_when_missing_audio_is_not_masked():
    from modeling_avigate import AvigateConfig, AvigateModel
    from modeling_avigate.testing_utils import tiny_config_kwargs

    model = AvigateModel(AvigateConfig(**tiny_config_kwargs(mask_missing_audio=False))).eval()
    inputs = {"pixel_values": torch.randn(2, 3, 3, 32, 32), "input_values": torch.randn(2, 1024, 128),
              "has_audio": torch.tensor([True, False])}
    with torch.no_grad():
        torch.testing.assert_close(video_features(model, inputs).pooler_output,
                                   model.get_video_features(**inputs).pooler_output)
        assert video_features(model, inputs).attn_gates[1].ne(0).any()
