"""The synthetic audio-visual benchmark: plan structure, determinism, decodable files, separable sounds, tokenizer."""

import filecmp
import json
import os
import warnings
from collections import Counter

import av
import numpy as np
import pytest

from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark, synthetic_tokenizer
from modeling_avigate.data.synthetic import (
    AUDIO_INFORMATIVE,
    AUDIO_NOISE,
    AUDIO_OFFSCREEN,
    BACKGROUNDS,
    COLORS,
    DIRECTIONS,
    MERGES_FILE,
    NO_AUDIO,
    NOISE_SOUNDS,
    PRESETS,
    SOUND_EVENTS,
    SPEAKER_COLOR,
    VOCAB_FILE,
    SyntheticSettings,
    plan_split,
    render_frames,
    render_sound,
    synthetic_words,
)
from modeling_avigate.data.synthetic import main as synthetic_main
from modeling_avigate.folders import MARKER_FILE, FolderOwnershipError
from modeling_avigate.vocab import build_word_level_bpe

from conftest import folder_snapshot


SIZES = {"train": 12, "validation": 6, "test": 8}
SOUND_WORDS = {word for sound in SOUND_EVENTS for word in sound.split()}


def _visuals(clip):
    return clip.shape, clip.color, clip.direction, clip.background


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    return generate_synthetic_benchmark(str(tmp_path_factory.mktemp("synthetic")), seed=3, sizes=SIZES, num_proc=2)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_default_plan_proportions_twins_and_captions(split):
    clips = plan_split(split, PRESETS["default"][split], seed=0)
    n = len(clips)
    kinds = Counter(clip.kind for clip in clips)
    rest = n - 2 * (n // 6) - n // 4 - n // 6
    assert kinds == {AUDIO_INFORMATIVE: 2 * (n // 6), AUDIO_OFFSCREEN: n // 4, AUDIO_NOISE: n // 6, NO_AUDIO: rest}
    by_id = {clip.video_id: clip for clip in clips}
    for clip in clips:
        words = set(clip.caption.split())
        if clip.kind == AUDIO_INFORMATIVE:
            twin = by_id[clip.twin_id]  # the twin is in the same split
            assert twin.twin_id == clip.video_id and _visuals(twin) == _visuals(clip) and twin.sound != clip.sound
            assert clip.sound in clip.caption and twin.caption == clip.caption.replace(clip.sound, twin.sound)
        else:  # offscreen sounds come from the informative events, but no caption names them
            assert clip.twin_id is None and not words & SOUND_WORDS
            expected = {AUDIO_OFFSCREEN: SOUND_EVENTS, AUDIO_NOISE: NOISE_SOUNDS, NO_AUDIO: ("none",)}[clip.kind]
            assert clip.sound in expected
        assert clip.has_audio == (clip.kind != NO_AUDIO)
        assert {clip.shape, clip.color, clip.direction, clip.background} <= words
    events = Counter(clip.sound for clip in clips if clip.kind == AUDIO_INFORMATIVE)
    assert max(events.values()) - min(events.values()) <= n // 8  # every event about equally frequent
    assert set(Counter(clip.sound for clip in clips if clip.kind == AUDIO_OFFSCREEN)) == set(SOUND_EVENTS)
    if split != "train":  # small splits: only twins share visuals, so visual-only retrieval is exact elsewhere
        groups = Counter(_visuals(clip) for clip in clips)
        assert all(count == 1 or _shared_only_by_twins(clips, visual) for visual, count in groups.items())


def _shared_only_by_twins(clips, visual):
    sharing = [clip for clip in clips if _visuals(clip) == visual]
    return len(sharing) == 2 and sharing[0].twin_id == sharing[1].video_id


def test_same_seed_same_bytes_other_seed_differs(benchmark, tmp_path):
    # the fixture used parallel workers; one process must write the same bytes
    again = generate_synthetic_benchmark(str(tmp_path / "again"), seed=3, sizes=SIZES, num_proc=1)
    names = sorted(os.listdir(os.path.join(benchmark, "videos")))
    assert len(names) == sum(SIZES.values())
    _, mismatch, errors = filecmp.cmpfiles(os.path.join(benchmark, "videos"), os.path.join(again, "videos"), names,
                                           shallow=False)
    assert mismatch == [] and errors == []
    for split in SIZES:
        assert filecmp.cmp(os.path.join(benchmark, f"{split}.jsonl"), os.path.join(again, f"{split}.jsonl"), False)
    other = generate_synthetic_benchmark(str(tmp_path / "other"), seed=4, sizes={"test": 8})
    with open(os.path.join(benchmark, "test.jsonl")) as a, open(os.path.join(other, "test.jsonl")) as b:
        assert a.read() != b.read()


def test_existing_complete_set_is_not_rewritten(benchmark):
    path = os.path.join(benchmark, "videos", "test_0000.mp4")
    before = os.stat(path).st_mtime_ns
    generate_synthetic_benchmark(benchmark, seed=3, sizes=SIZES)
    assert os.stat(path).st_mtime_ns == before


def test_a_different_set_replaces_the_previous_one(tmp_path):
    root = generate_synthetic_benchmark(str(tmp_path), sizes={"train": 8, "validation": 6}, num_proc=1)
    generate_synthetic_benchmark(root, sizes={"train": 6}, num_proc=1)
    assert sorted(os.listdir(root)) == [MARKER_FILE, "synthetic_info.json", "train.jsonl", "videos"]
    assert sorted(os.listdir(os.path.join(root, "videos"))) == [f"train_{i:04d}.mp4" for i in range(6)]


def _users_folder(root):
    """A folder of the user's whose names look like the generator's."""
    os.makedirs(os.path.join(root, "videos"))
    for name, content in [("train_0001.mp4", b"my holiday"), ("notes.txt", b"keep me"), ("test.jsonl", b"{}\n"),
                          (os.path.join("videos", "train_0002.mp4"), b"my wedding")]:
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(content)
    return str(root)


def test_a_users_folder_is_refused_and_left_byte_identical(tmp_path, capsys):
    root = _users_folder(tmp_path / "mine")
    before = folder_snapshot(root)
    with pytest.raises(FolderOwnershipError, match="refusing to write the synthetic benchmark into") as error:
        generate_synthetic_benchmark(root, sizes={"train": 6}, num_proc=1)
    assert "\n" not in str(error.value)
    with pytest.raises(SystemExit) as exit_info:  # the command line: one line, no traceback
        synthetic_main([root, "--preset", "quick", "--overwrite", "--num-proc", "1"])
    assert str(exit_info.value.code).startswith("python -m modeling_avigate.data: error: refusing")
    assert "\n" not in str(exit_info.value.code)
    assert folder_snapshot(root) == before


def test_an_unmarked_folder_with_an_earlier_sets_info_and_a_users_file_is_refused(tmp_path):
    root = generate_synthetic_benchmark(str(tmp_path / "set"), sizes={"train": 6}, num_proc=1)
    os.remove(os.path.join(root, MARKER_FILE))
    with open(os.path.join(root, "videos", "holiday.mp4"), "wb") as handle:
        handle.write(b"mine")
    before = folder_snapshot(root)
    with pytest.raises(FolderOwnershipError):
        generate_synthetic_benchmark(root, sizes={"train": 8}, num_proc=1)
    assert folder_snapshot(root) == before


def test_a_set_without_the_marker_is_refused_even_when_it_holds_only_a_sets_files(tmp_path):
    root = generate_synthetic_benchmark(str(tmp_path / "set"), sizes={"train": 8}, num_proc=1)
    os.remove(os.path.join(root, MARKER_FILE))
    before = folder_snapshot(root)
    with pytest.raises(FolderOwnershipError, match="a folder this package did not create"):
        generate_synthetic_benchmark(root, sizes={"train": 6}, num_proc=1)
    assert folder_snapshot(root) == before


def test_the_loudspeaker_is_visible_exactly_where_the_caption_names_the_sound():
    settings = SyntheticSettings()
    for clip in plan_split("test", 24, seed=1):
        frames = render_frames(clip, np.random.default_rng(0), settings)
        speaker_pixels = np.all(frames == SPEAKER_COLOR, axis=-1).sum(axis=(1, 2))
        named = clip.kind == AUDIO_INFORMATIVE
        assert named == any(sound in clip.caption for sound in SOUND_EVENTS)
        assert (speaker_pixels > 20).all() if named else (speaker_pixels == 0).all(), clip


def test_every_frame_shows_the_direction_by_its_fading_streak():
    settings = SyntheticSettings()
    for clip in plan_split("test", 24, seed=2):
        frames = render_frames(clip, np.random.default_rng(0), settings).astype(int)
        color, background = np.asarray(COLORS[clip.color]), np.asarray(BACKGROUNDS[clip.background])
        step = np.asarray(DIRECTIONS[clip.direction])
        for frame in frames[[0, len(frames) // 2, -1]]:
            solid = np.all(frame == color, axis=-1)
            streak = ~solid & ~np.all(frame == background, axis=-1) & ~np.all(frame == SPEAKER_COLOR, axis=-1)
            centre = np.argwhere(solid).mean(axis=0)[::-1]  # (x, y)
            trail = np.argwhere(streak).mean(axis=0)[::-1]
            assert np.dot(trail - centre, step) < -2, clip  # the streak lies behind the shape


def test_the_shape_starts_on_its_direction_side_and_moves_toward_that_edge():
    settings = SyntheticSettings()
    for clip in plan_split("test", 24, seed=3):
        frames = render_frames(clip, np.random.default_rng(0), settings)
        step = np.asarray(DIRECTIONS[clip.direction])
        offsets = []
        for frame in frames:
            solid = np.argwhere(np.all(frame == np.asarray(COLORS[clip.color]), axis=-1)).mean(axis=0)[::-1]
            offsets.append(np.dot(solid + 0.5 - settings.frame_size / 2, step))  # along the motion, from the centre
        # from the first frame on, the shape's centre lies on its direction's side, and it keeps moving that way
        assert 0.1 * settings.frame_size < offsets[0] < 0.28 * settings.frame_size, clip
        assert np.all(np.diff(offsets) >= 0) and offsets[-1] > offsets[0] + 0.08 * settings.frame_size, clip


def test_files_are_real_mp4_with_the_recorded_tracks(benchmark):
    with open(os.path.join(benchmark, "test.jsonl")) as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        with av.open(os.path.join(benchmark, row["video"])) as container:
            assert container.format.name.startswith("mov,mp4")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            assert len(frames) == 16 and frames[0].shape == (64, 64, 3)
            assert bool(container.streams.audio) == row["has_audio"]
        if row["has_audio"]:
            with av.open(os.path.join(benchmark, row["video"])) as container:
                stream = container.streams.audio[0]
                assert (stream.codec_context.name, stream.sample_rate, stream.channels) == ("aac", 16000, 1)
                audio = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])
            assert 1.9 * 16000 < audio.size < 2.2 * 16000 and 0.03 < np.sqrt(np.mean(audio**2)) < 0.3


def test_files_decode_with_the_processor(benchmark):
    video_io = pytest.importorskip("modeling_avigate.processors.video_io")
    rows = load_benchmark("synthetic", benchmark, "test", cache_dir=os.path.join(benchmark, "..", "cache"))
    for row in rows:
        clip = video_io.read_video(row["video"], num_frames=8, shortest_edge=32, crop_size=(32, 32))
        assert clip.frames.shape == (8, 32, 32, 3)
        assert (clip.audio is not None) == row["has_audio"]


def test_builder_views_carry_kinds_and_attributes(benchmark, tmp_path):
    pairs = load_benchmark("synthetic", benchmark, "train", cache_dir=str(tmp_path))
    videos = load_benchmark("synthetic", benchmark, "validation", view="videos", cache_dir=str(tmp_path))
    assert pairs.num_rows == SIZES["train"] and videos.num_rows == SIZES["validation"]
    assert all(len(captions) == 1 for captions in videos["captions"])
    assert Counter(pairs["kind"]) == {AUDIO_INFORMATIVE: 4, AUDIO_OFFSCREEN: 3, AUDIO_NOISE: 2, NO_AUDIO: 3}
    assert all(os.path.isfile(path) for path in pairs["video"])
    assert [kind != NO_AUDIO for kind in pairs["kind"]] == pairs["has_audio"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete set loads without a missing-file warning
        load_benchmark("synthetic", benchmark, "test", cache_dir=str(tmp_path))


def _fbank_summary(wave: np.ndarray) -> np.ndarray:
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AST's 128-bin filterbank warns about an empty low bin
        fbank = ASTFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np")["input_values"][0][:200]
    return np.concatenate([fbank.mean(0), fbank.std(0)])  # time-pooled: spectrum and its temporal variation


def test_sound_classes_are_separable_in_a_128_bin_fbank():
    classes = SOUND_EVENTS + NOISE_SOUNDS
    features = {sound: [_fbank_summary(render_sound(sound, np.random.default_rng(i))) for i in range(4)]
                for sound in classes}
    centroids = {sound: np.mean(values[1:], axis=0) for sound, values in features.items()}
    for sound, values in features.items():  # the held-out example of every class is nearest its own class
        nearest = min(classes, key=lambda other: np.linalg.norm(values[0] - centroids[other]))
        assert nearest == sound


def test_synthetic_tokenizer_covers_every_caption():
    tokenizer = synthetic_tokenizer()
    vocab, merges = build_word_level_bpe(synthetic_words())
    package = os.path.dirname(__import__("modeling_avigate.data", fromlist=["_"]).__file__)
    with open(os.path.join(package, VOCAB_FILE)) as handle:
        assert json.load(handle) == vocab  # shipped files are what the writer makes of synthetic_words()
    with open(os.path.join(package, MERGES_FILE)) as handle:
        assert [tuple(line.split()) for line in handle.read().splitlines()[1:]] == merges
    clips = [clip for split, n in PRESETS["default"].items() for clip in plan_split(split, n, seed=0)]
    for caption in {clip.caption for clip in clips}:
        ids = tokenizer(caption)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == caption  # no unknown or lost word
        assert len(ids) <= 32  # fits the processor's default max_length without truncation
