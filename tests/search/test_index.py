"""VideoIndex: exact search equals model.similarity, incremental add, persistence, corruption, model checks."""

import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch

from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.search import (
    CorruptIndexError,
    IncompatibleModelError,
    VideoIndex,
    exact_search,
    rerank_candidates,
    shortlist,
    build_first_stage,
)
from modeling_avigate.modeling_avigate import pool_video_embeds
from modeling_avigate.processors import MediaError
from modeling_avigate.search.metadata import METADATA_CHECKSUM_KEY, metadata_checksum

from builders import build_gallery, tiny_model, tiny_processor
from media import write_test_video


QUIET = EmbeddingOptions(progress=False)
QUERIES = ["a dog barks at a car", "red circle moving left", "a woman sings", "blue square"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return build_gallery(tmp_path_factory.mktemp("index"), 6)


def brute_force(model, processor, index, queries):
    tokens = processor(text=queries, return_tensors="pt")
    with torch.no_grad():
        text = model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).pooler_output
        return model.similarity(text, index.frame_embeds.float(), index.video_mask)


def test_build_stores_normalised_fp16_embeddings_and_metadata(setup):
    index, model, processor = setup["index"], setup["model"], setup["processor"]
    assert index.paths == sorted(os.path.abspath(path) for path in setup["paths"])
    assert index.frame_embeds.dtype == torch.float16 and index.frame_embeds.shape == (6, 4, 32)
    real = index.frame_embeds.float()[index.video_mask]
    torch.testing.assert_close(real.norm(dim=-1), torch.ones(real.shape[0]), atol=2e-3, rtol=0)
    assert index.has_audio.tolist() == [True, True, False, True, True, False]
    assert all(entry["duration"] > 0 for entry in index.entries)
    # The stored embeddings are the model's own, rounded to fp16.
    batch = processor(videos=setup["paths"][:2], return_tensors="pt")
    with torch.no_grad():
        direct = model.get_video_features(batch["pixel_values"], batch["video_mask"], batch["input_values"],
                                          batch["has_audio"]).last_hidden_state
    torch.testing.assert_close(index.frame_embeds[:2].float(), direct, atol=2e-3, rtol=0)
    assert index.info["processor"]["video_processor"]["num_frames"] == 4
    assert index.info["first_stage"] is None


def test_search_equals_brute_force_similarity(setup):
    index, model, processor = setup["index"], setup["model"], setup["processor"]
    expected = brute_force(model, processor, index, QUERIES)
    results = index.search(QUERIES, k=4)
    for row, hits in zip(expected, results):
        order = torch.sort(row, descending=True, stable=True).indices[:4].tolist()
        assert [hit.position for hit in hits] == order
        torch.testing.assert_close(torch.tensor([hit.score for hit in hits]), row[order], atol=1e-4, rtol=0)
    single = index.search(QUERIES[0], k=2)
    assert [hit.path for hit in single] == [hit.path for hit in results[0][:2]]


def test_exact_search_is_independent_of_chunk_size_and_matches_topk():
    torch.manual_seed(0)
    frames = torch.nn.functional.normalize(torch.randn(37, 5, 16), dim=-1)
    mask = torch.ones(37, 5, dtype=torch.bool)
    mask[::4, 3:] = False
    text = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    video = pool_video_embeds(frames, mask)
    big_scores, big_ids = exact_search(text, frames, mask, video, 50.0, 1.0, k=7)
    small_scores, small_ids = exact_search(text, frames, mask, video, 50.0, 1.0, k=7, chunk_elements=3 * 5 * 4)
    assert torch.equal(big_ids, small_ids)
    torch.testing.assert_close(big_scores, small_scores)
    # Re-ranking a shortlist that contains the true top 7 gives the same answer.
    candidates = torch.cat([big_ids, torch.full((3, 2), -1)], dim=1).flip(1)
    rerank_scores, rerank_ids = rerank_candidates(text, candidates, frames, mask, video, 50.0, 1.0, k=7)
    assert torch.equal(rerank_ids, big_ids)


def test_two_stage_flat_equals_exact_when_shortlist_covers_gallery(setup):
    pytest.importorskip("faiss")
    index = setup["index"]
    staged = VideoIndex.merge([index])
    staged.attach(setup["model"], setup["processor"])
    staged.build_first_stage("flat", shortlist_size=6)
    exact = index.search(QUERIES, k=3)
    two_stage = staged.search(QUERIES, k=3)
    assert [[hit.position for hit in hits] for hits in exact] == [[hit.position for hit in hits] for hits in two_stage]
    ivf = build_first_stage(index.video_embeds.numpy(), "ivf", nlist=2)
    assert shortlist(ivf, index.video_embeds[:2], 3, nprobe=2)[:, 0].tolist() == [0, 1]


def test_pq_first_stage_refines_to_the_exact_global_ranking_and_survives_save_load(tmp_path, capfd):
    pytest.importorskip("faiss")
    generator = torch.Generator().manual_seed(0)
    frames = torch.nn.functional.normalize(torch.randn(200, 3, 32, generator=generator), dim=-1).half()
    index = VideoIndex.from_embeddings([f"v{i}.mp4" for i in range(200)], frames)
    index.build_first_stage("pq", shortlist_size=25)
    assert "WARNING clustering" not in capfd.readouterr().err  # a small gallery trains PQ without faiss warnings
    assert index.info["first_stage"] == {"kind": "pq", "shortlist_size": 25, "refine_factor": 8}
    queries = torch.nn.functional.normalize(torch.randn(5, 32, generator=generator), dim=-1)
    # 8 × 25 refined candidates cover all 200 videos, so the shortlist is the exact global top 25.
    expected = (queries @ index.video_embeds.T).topk(25).indices
    assert torch.equal(shortlist(index.first_stage, queries, 25), expected)
    # A shortlist of the whole gallery makes the two-stage answer the exact one; loading keeps the refine factor.
    index.save(tmp_path / "pq")
    loaded = VideoIndex.load(tmp_path / "pq")
    assert loaded.first_stage.k_factor == 8
    exact_scores, exact_ids = loaded.search_embeddings(queries, k=5, exact=True)
    scores, ids = loaded.search_embeddings(queries, k=5, shortlist_size=200)
    assert torch.equal(ids, exact_ids)
    torch.testing.assert_close(scores, exact_scores)
    with pytest.raises(ValueError, match="at least 16 videos"):
        build_first_stage(index.video_embeds[:10].numpy(), "pq")


@pytest.mark.parametrize("first_stage", [None, "flat", "pq", "hnsw", "ivf"])
def test_a_video_whose_embedding_is_nan_is_never_ranked(first_stage):
    """A NaN score sorts above every number: the broken video must drop out of the ranking, not lead it, and the
    other videos must rank as in an index without it (in the exact scan and behind every faiss first stage)."""
    if first_stage is not None:
        pytest.importorskip("faiss")
    generator = torch.Generator().manual_seed(0)
    frames = torch.nn.functional.normalize(torch.randn(40, 3, 16, generator=generator), dim=-1)
    paths = [f"v{i}.mp4" for i in range(40)]
    broken_frames = frames.clone()
    broken_frames[7, 1] = float("nan")
    broken = VideoIndex.from_embeddings(paths, broken_frames)
    if first_stage is not None:
        broken.build_first_stage(first_stage, shortlist_size=40)
    # Query 0 is the broken video's own clean embedding; the others are other videos'.
    clean = VideoIndex.from_embeddings(paths, frames)
    queries = clean.video_embeds[[7, 3, 20]]
    expected_scores, expected = clean.search_embeddings(queries, k=40, exact=True)
    kept = expected != 7
    scores, positions = broken.search_embeddings(queries, k=40)
    assert torch.equal(positions[:, :39], expected[kept].view(3, 39)) and positions[:, 39].tolist() == [-1] * 3
    torch.testing.assert_close(scores[:, :39], expected_scores[kept].view(3, 39))
    assert all("v7.mp4" not in [hit.path for hit in hits] for hits in broken.search(queries, k=40))


def test_save_load_round_trip_and_first_stage_mode(setup, tmp_path):
    pytest.importorskip("faiss")
    index = VideoIndex.merge([setup["index"]])
    index.build_first_stage("hnsw", shortlist_size=4)
    index.save(tmp_path / "gallery")
    assert sorted(os.listdir(tmp_path)) == ["gallery"]  # no staging folder left behind
    loaded = VideoIndex.load(tmp_path / "gallery", model=setup["model"], processor=setup["processor"])
    assert loaded.info["first_stage"]["kind"] == "hnsw"
    assert loaded.paths == index.paths and torch.equal(loaded.frame_embeds, index.frame_embeds)
    assert torch.equal(loaded.video_mask, index.video_mask) and torch.equal(loaded.has_audio, index.has_audio)
    expected = [hit.path for hit in setup["index"].search(QUERIES[1], k=3)]
    assert [hit.path for hit in loaded.search(QUERIES[1], k=3)] == expected
    # Saving again over an existing index replaces it atomically.
    loaded.save(tmp_path / "gallery")
    assert VideoIndex.load(tmp_path / "gallery").info["first_stage"]["kind"] == "hnsw"


def test_add_skips_indexed_files_and_equals_full_rebuild(setup, tmp_path):
    model, processor, full = setup["model"], setup["processor"], setup["index"]
    folder = os.path.dirname(setup["paths"][0])
    partial = VideoIndex.build(model, processor, setup["paths"][:3], EmbeddingOptions(batch_size=2, progress=False))
    added = partial.add(folder, EmbeddingOptions(batch_size=2, progress=False))
    assert [os.path.basename(path) for path in added] == ["clip-03.mp4", "clip-04.mp4", "clip-05.mp4"]
    assert partial.add(folder, QUIET) == []
    assert partial.paths == full.paths
    torch.testing.assert_close(partial.frame_embeds.float(), full.frame_embeds.float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(partial.video_embeds, full.video_embeds, atol=1e-3, rtol=0)
    assert torch.equal(partial.has_audio, full.has_audio)


def test_bad_files_are_skipped_and_reported(setup, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in setup["paths"][:2]:
        shutil.copy(path, folder)
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    with open(folder / "clip-00.mp4", "rb") as handle:
        (folder / "truncated.mp4").write_bytes(handle.read()[:300])
    index = VideoIndex.build(setup["model"], setup["processor"], str(folder), QUIET)
    assert [os.path.basename(path) for path in index.paths] == ["clip-00.mp4", "clip-01.mp4"]
    assert sorted(os.path.basename(failure["path"]) for failure in index.failures) == ["broken.mp4", "truncated.mp4"]
    assert all(failure["error"] for failure in index.failures)


def test_a_file_that_embeds_to_nan_is_refused_and_named(setup, tmp_path):
    """A sound track of NaN samples (a broken float PCM file) makes the embedding NaN: the file is listed as a
    failure naming it, never stored; with strict it stops the build."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(setup["paths"][0], folder)
    noise = np.full(16000, np.nan, dtype=np.float32)
    write_test_video(str(folder / "nan-sound.mkv"), num_frames=8, fps=8, audio=noise, audio_codec="pcm_f32le")
    index = VideoIndex.build(setup["model"], setup["processor"], str(folder), QUIET)
    assert [os.path.basename(path) for path in index.paths] == ["clip-00.mp4"]
    assert [os.path.basename(failure["path"]) for failure in index.failures] == ["nan-sound.mkv"]
    assert "NaN or inf" in index.failures[0]["error"]
    assert index.frame_embeds.float().isfinite().all()
    with pytest.raises(MediaError, match="nan-sound.mkv: its segment at 0.00-1.00 s embeds to NaN"):
        VideoIndex.build(setup["model"], setup["processor"], str(folder), EmbeddingOptions(progress=False, strict=True))


def test_corrupt_or_truncated_files_give_clear_errors(setup, tmp_path):
    setup["index"].save(tmp_path / "gallery")
    embeddings = tmp_path / "gallery" / "embeddings.safetensors"
    content = embeddings.read_bytes()

    embeddings.write_bytes(content[: len(content) // 2])
    with pytest.raises(CorruptIndexError, match="embeddings.safetensors.*checksum"):
        VideoIndex.load(tmp_path / "gallery")
    with pytest.raises(CorruptIndexError, match="embeddings.safetensors cannot be read"):
        VideoIndex.load(tmp_path / "gallery", verify=False)

    flipped = bytearray(content)
    flipped[-10] ^= 0xFF
    embeddings.write_bytes(bytes(flipped))
    with pytest.raises(CorruptIndexError, match="checksum"):
        VideoIndex.load(tmp_path / "gallery")

    embeddings.write_bytes(content)
    (tmp_path / "gallery" / "index.json").write_text('{"format_version": 1, "videos": [')
    with pytest.raises(CorruptIndexError, match="index.json is not valid JSON"):
        VideoIndex.load(tmp_path / "gallery")
    shutil.rmtree(tmp_path / "gallery")
    with pytest.raises(FileNotFoundError, match="no AVIGATE index"):
        VideoIndex.load(tmp_path / "gallery")


def test_other_model_is_refused_unless_forced(setup, tmp_path):
    processor = setup["processor"]
    setup["index"].save(tmp_path / "gallery")
    other_config = tiny_model(processor, fusion_num_layers=1)
    with pytest.raises(IncompatibleModelError, match="config differs.*force=True"):
        VideoIndex.load(tmp_path / "gallery", model=other_config, processor=processor)
    other_weights = tiny_model(processor, seed=1)
    with pytest.raises(IncompatibleModelError, match="weights differ"):
        VideoIndex.load(tmp_path / "gallery", model=other_weights, processor=processor)
    forced = VideoIndex.load(tmp_path / "gallery", model=other_config, processor=processor, force=True)
    assert len(forced.search(QUERIES[0], k=2)) == 2
    more_frames = tiny_processor(setup["root"] / "tokenizer", num_frames=6)
    with pytest.raises(IncompatibleModelError, match="processor settings differ"):
        VideoIndex.load(tmp_path / "gallery", model=setup["model"], processor=more_frames)


def test_a_saved_and_reloaded_processor_still_matches_the_index(setup, tmp_path):
    """`save_pretrained` adds `auto_map` to the processor it is called on (and to the saved files): not a setting
    that changes the embeddings, so neither that processor, nor one loaded from the folder, is refused; nor is a
    processor without it refused by an index whose stored settings carry it."""
    from modeling_avigate.processors import AvigateProcessor

    setup["index"].save(tmp_path / "gallery")
    processor = copy.deepcopy(setup["processor"])  # the module fixture's processor must not be changed
    processor.save_pretrained(tmp_path / "processor")
    assert "auto_map" in processor.to_dict()
    reloaded = AvigateProcessor.from_pretrained(tmp_path / "processor")
    for candidate in (processor, reloaded):
        index = VideoIndex.load(tmp_path / "gallery", model=setup["model"], processor=candidate)
        assert index.search(QUERIES[0], k=2)[0].path in setup["index"].paths
    # The other way round: an index that stored auto_map (as one built before the key was ignored would).
    metadata_path = tmp_path / "gallery" / "index.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["processor"]["auto_map"] = processor.to_dict()["auto_map"]
    metadata[METADATA_CHECKSUM_KEY] = metadata_checksum(metadata)
    metadata_path.write_text(json.dumps(metadata))
    VideoIndex.load(tmp_path / "gallery", model=setup["model"], processor=setup["processor"])
    assert "auto_map" not in setup["processor"].to_dict()


def test_video_file_hands_out_only_the_indexed_file(setup, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in setup["paths"][:2]:
        shutil.copy(path, folder)
    index = VideoIndex.build(setup["model"], setup["processor"], str(folder), QUIET)
    assert index.video_file(0) == str(folder / "clip-00.mp4")
    data = bytearray((folder / "clip-01.mp4").read_bytes())
    data[100] ^= 0xFF  # same size, other header bytes
    (folder / "clip-01.mp4").write_bytes(bytes(data))
    with pytest.raises(FileNotFoundError, match="clip-01.mp4 was changed since it was indexed"):
        index.video_file(1)
    os.remove(folder / "clip-00.mp4")
    with pytest.raises(FileNotFoundError, match="clip-00.mp4 was moved or deleted"):
        index.video_file(0)
    with pytest.raises(LookupError):
        index.video_file(2)
    raw = VideoIndex.from_embeddings([setup["paths"][0]], index.frame_embeds[:1].float())
    with pytest.raises(FileNotFoundError, match="records no signature"):
        raw.video_file(0)


def test_rank_captions_matches_similarity_for_indexed_and_new_videos(setup, tmp_path):
    index, model, processor = setup["index"], setup["model"], setup["processor"]
    expected = brute_force(model, processor, index, QUERIES)[:, 2]
    ranked = index.rank_captions(setup["paths"][2], QUERIES)
    assert [hit.position for hit in ranked] == torch.sort(expected, descending=True, stable=True).indices.tolist()
    torch.testing.assert_close(torch.tensor([hit.score for hit in ranked]), expected.sort(descending=True).values,
                               atol=1e-4, rtol=0)
    # A file outside the index is embedded on the fly and scores (almost) the same as its indexed copy.
    copy = shutil.copy(setup["paths"][2], tmp_path / "copy.mp4")
    fresh = index.rank_captions(str(copy), QUERIES)
    assert [hit.path for hit in fresh] == [hit.path for hit in ranked]


def test_dataset_input_and_errors(setup, tmp_path):
    import datasets

    dataset = datasets.Dataset.from_dict({"video": setup["paths"][:2]})
    index = VideoIndex.build(setup["model"], setup["processor"], dataset, QUIET)
    assert index.paths == [os.path.abspath(path) for path in setup["paths"][:2]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        VideoIndex.build(setup["model"], setup["processor"], str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="'video' column"):
        VideoIndex.build(setup["model"], setup["processor"], datasets.Dataset.from_dict({"path": ["x"]}))
