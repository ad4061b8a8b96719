"""`datasets` builders for MSR-VTT, VATEX, Charades and the synthetic benchmark.

datasets 5.x no longer runs loading scripts, so these are `GeneratorBasedBuilder` subclasses used directly
(`builder.download_and_prepare(); builder.as_dataset(split)`), usually through `load_benchmark`. They read the
annotation files of a folder the user downloaded, find each video by its file stem anywhere under that folder, and
store the video as a path string: datasets' `Video`/`Audio` features need torchcodec, which is optional here, and
`AvigateProcessor` decodes paths with PyAV.

Two views of every split:

- `view="pairs"` (training): one row per (video, caption): `{video_id, video, caption, has_audio, ...}`;
- `view="videos"` (evaluation): one row per video with all its captions: `{video_id, video, captions, has_audio, ...}`.

`has_audio` is `None` unless `scan_audio=True` opens every video with PyAV to look for a sound track (the
synthetic benchmark records it at generation time). Videos that are listed in the annotations but absent from the
folder are dropped with a single warning that counts and lists them; `strict=True` raises instead.

The cache key includes the folder's path and a fingerprint of its files (relative path, size, mtime), so pointing
at another folder, or changing files in the same one, prepares the data again instead of returning a stale table.
"""

import csv
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import datasets

from ..fingerprints import directory_fingerprint
from ..media_files import index_videos, path_inside


_MAX_LISTED_MISSING = 20


def has_audio_stream(path: str) -> bool:
    """Whether the media file at `path` has at least one audio stream (reads the header only)."""
    import av

    try:
        with av.open(path) as container:
            return len(container.streams.audio) > 0
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot open video {path!r} to look for a sound track: {error}") from error


@dataclass
class VideoTextConfig(datasets.BuilderConfig):
    """Options shared by every benchmark builder.

    Args:
        view: `"pairs"` (one row per caption) or `"videos"` (one row per video, `captions` list).
        strict: raise `FileNotFoundError` if an annotated video is missing, instead of warning and dropping it.
        scan_audio: open each video with PyAV and fill `has_audio`; otherwise `has_audio` is `None`
            (the synthetic builder always fills it from its metadata).
        data_fingerprint: set automatically from the files under `data_dir`; part of the cache key.
    """

    view: str = "pairs"
    strict: bool = False
    scan_audio: bool = False
    data_fingerprint: str = ""

    def __post_init__(self):
        super().__post_init__()
        if self.view not in ("pairs", "videos"):
            raise ValueError(f"`view` must be 'pairs' or 'videos', got {self.view!r}")


class VideoTextBuilder(datasets.GeneratorBasedBuilder):
    """Base class: subclasses parse annotations into records; this class resolves videos and writes both views.

    A subclass sets `DATASET_NAME`, `SPLITS` and `EXTRA_FEATURES`, and implements `_split_files(split)` (the
    annotation files a split needs, directly in `data_dir`) and `_records(split)` returning
    `[{"video_id": str, "captions": list[str], **extra}]` in annotation order. Splits whose files are absent are
    skipped (e.g. a test-only download), and `load_benchmark` names the missing files if such a split is asked for.
    """

    BUILDER_CONFIG_CLASS = VideoTextConfig
    VERSION = datasets.Version("1.0.0")
    DATASET_NAME: str = ""
    SPLITS: tuple[str, ...] = ()
    EXTRA_FEATURES: dict[str, Any] = {}

    def __init__(self, *args, data_dir: Optional[str] = None, **kwargs):
        if data_dir is None:
            raise ValueError(f"{type(self).__name__} needs `data_dir`: the folder holding the benchmark's files")
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"`data_dir` {data_dir!r} is not a directory")
        data_dir = os.path.abspath(data_dir)
        kwargs.setdefault("data_fingerprint", directory_fingerprint(data_dir))
        # every builder lives in this module, whose name datasets would use for all of them: set it per dataset
        kwargs.setdefault("dataset_name", self.DATASET_NAME)
        super().__init__(*args, data_dir=data_dir, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        text = (
            {"caption": datasets.Value("string")}
            if self.config.view == "pairs"
            else {"captions": datasets.List(datasets.Value("string"))}
        )
        features = {
            "video_id": datasets.Value("string"),
            "video": datasets.Value("string"),
            **text,
            "has_audio": datasets.Value("bool"),
            **self.EXTRA_FEATURES,
        }
        return datasets.DatasetInfo(description=self.__doc__, features=datasets.Features(features))

    def _split_files(self, split: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _records(self, split: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _annotation_path(self, name: str) -> str:
        return os.path.join(self.config.data_dir, name)

    def missing_split_files(self, split: str) -> list[str]:
        """The annotation files of `split` that are not in `data_dir` (empty when the split can be prepared)."""
        return [name for name in self._split_files(split) if not os.path.isfile(self._annotation_path(name))]

    def _locate(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fill each record's `video` path from the stem index; records without a file get `video=None`."""
        index = index_videos(self.config.data_dir)
        return [{**record, "video": index.get(record["video_id"])} for record in records]

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        # Resolution happens here, not in `_generate_examples`, so that the missing-file warning is emitted once
        # for all splits and `strict` raises a plain FileNotFoundError (datasets wraps generator errors).
        splits = [split for split in self.SPLITS if not self.missing_split_files(split)]
        if not splits:
            expected = sorted({name for split in self.SPLITS for name in self._split_files(split)})
            raise FileNotFoundError(
                f"{self.DATASET_NAME}: none of the annotation files {expected} is in {self.config.data_dir!r} "
                "(see docs/datasets.md for the folder layout)"
            )
        located = {split: self._locate(self._records(split)) for split in splits}
        missing = sorted({r["video_id"] for records in located.values() for r in records if r["video"] is None})
        if missing:
            listed = ", ".join(missing[:_MAX_LISTED_MISSING]) + (" ..." if len(missing) > _MAX_LISTED_MISSING else "")
            message = (
                f"{self.DATASET_NAME}: {len(missing)} annotated video(s) not found under {self.config.data_dir!r}: "
                f"{listed}"
            )
            if self.config.strict:
                raise FileNotFoundError(message)
            warnings.warn(message + " (dropped; pass strict=True to raise)", stacklevel=2)
        generators = []
        for split, records in located.items():
            records = [record for record in records if record["video"] is not None]
            if self.config.scan_audio:
                records = [{**record, "has_audio": has_audio_stream(record["video"])} for record in records]
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"records": records}))
        return generators

    def _generate_examples(self, records: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for record in records:
            row = {key: record.get(key) for key in ("video_id", "video", "has_audio", *self.EXTRA_FEATURES)}
            if self.config.view == "videos":
                yield record["video_id"], {**row, "captions": record["captions"]}
            else:
                for number, caption in enumerate(record["captions"]):
                    yield f"{record['video_id']}#{number}", {**row, "caption": caption}


@dataclass
class MsrvttConfig(VideoTextConfig):
    """MSR-VTT options. `train_split`: `"9k"` (`MSRVTT_train.9k.csv`, the default) or `"7k"`."""

    train_split: str = "9k"

    def __post_init__(self):
        super().__post_init__()
        if self.train_split not in ("9k", "7k"):
            raise ValueError(f"`train_split` must be '9k' or '7k', got {self.train_split!r}")


class MsrvttBuilder(VideoTextBuilder):
    """MSR-VTT: train = the 9k (or 7k) split with all 20 captions per video; test = 1k-A (JSFUSION), one caption each.

    Files in `data_dir`: `MSRVTT_data.json`, `MSRVTT_train.9k.csv` (and/or `MSRVTT_train.7k.csv`),
    `MSRVTT_JSFUSION_test.csv`; videos `videoN.mp4` (or `.webm`) anywhere below `data_dir`.
    """

    BUILDER_CONFIG_CLASS = MsrvttConfig
    DATASET_NAME = "msrvtt"
    SPLITS = ("train", "test")

    def _split_files(self, split: str) -> tuple[str, ...]:
        if split == "test":
            return ("MSRVTT_JSFUSION_test.csv",)
        return (f"MSRVTT_train.{self.config.train_split}.csv", "MSRVTT_data.json")

    def _records(self, split: str) -> list[dict[str, Any]]:
        if split == "test":
            with open(self._annotation_path("MSRVTT_JSFUSION_test.csv"), newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            return [{"video_id": row["video_id"], "captions": [row["sentence"]]} for row in rows]
        train_csv = self._annotation_path(f"MSRVTT_train.{self.config.train_split}.csv")
        with open(train_csv, newline="", encoding="utf-8") as handle:
            video_ids = [row["video_id"] for row in csv.DictReader(handle)]
        with open(self._annotation_path("MSRVTT_data.json"), encoding="utf-8") as handle:
            sentences = json.load(handle)["sentences"]
        captions: dict[str, list[str]] = {video_id: [] for video_id in video_ids}
        for sentence in sentences:
            if sentence["video_id"] in captions:
                captions[sentence["video_id"]].append(sentence["caption"])
        return [{"video_id": video_id, "captions": captions[video_id]} for video_id in video_ids]


class VatexBuilder(VideoTextBuilder):
    """VATEX (CLIP4Clip protocol): `train_list.txt` / `test_list.txt` ids, `ref_captions.json` `{id: [captions]}`.

    Videos are found anywhere below `data_dir` by file stem == id.
    """

    DATASET_NAME = "vatex"
    SPLITS = ("train", "test")

    def _split_files(self, split: str) -> tuple[str, ...]:
        return (f"{split}_list.txt", "ref_captions.json")

    def _records(self, split: str) -> list[dict[str, Any]]:
        with open(self._annotation_path(f"{split}_list.txt"), encoding="utf-8") as handle:
            video_ids = [line.strip() for line in handle if line.strip()]
        with open(self._annotation_path("ref_captions.json"), encoding="utf-8") as handle:
            captions = json.load(handle)
        absent = [video_id for video_id in video_ids if video_id not in captions]
        if absent:
            raise ValueError(
                f"vatex: {len(absent)} id(s) of {split}_list.txt have no entry in ref_captions.json: {absent[:5]}"
            )
        return [{"video_id": video_id, "captions": list(captions[video_id])} for video_id in video_ids]


class CharadesBuilder(VideoTextBuilder):
    """Charades video retrieval: `Charades_v1_{train,test}.csv`, query = the `script` column, video `{id}.mp4`."""

    DATASET_NAME = "charades"
    SPLITS = ("train", "test")
    EXTRA_FEATURES = {"length": datasets.Value("float32")}

    def _split_files(self, split: str) -> tuple[str, ...]:
        return (f"Charades_v1_{split}.csv",)

    def _records(self, split: str) -> list[dict[str, Any]]:
        with open(self._annotation_path(f"Charades_v1_{split}.csv"), newline="", encoding="utf-8") as handle:
            return [
                {"video_id": row["id"], "captions": [row["script"]], "length": float(row["length"])}
                for row in csv.DictReader(handle)
            ]


class SyntheticBuilder(VideoTextBuilder):
    """The synthetic audio-visual benchmark written by `generate_synthetic_benchmark` (see `data/synthetic.py`).

    Rows also carry `kind` (`audio_informative`, `audio_noise`, `no_audio`), the visual attributes, the `sound`
    and, for audio-informative clips, the `twin_id` of the clip with the same visuals and a different sound.
    """

    DATASET_NAME = "avigate_synthetic"
    SPLITS = ("train", "validation", "test")
    EXTRA_FEATURES = {
        name: datasets.Value("string")
        for name in ("kind", "shape", "color", "direction", "background", "sound", "twin_id")
    }

    def _split_files(self, split: str) -> tuple[str, ...]:
        return (f"{split}.jsonl",)

    def _records(self, split: str) -> list[dict[str, Any]]:
        records = []
        with open(self._annotation_path(f"{split}.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                records.append({**row, "captions": [row.pop("caption")]})
        return records

    def _locate(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # the metadata names each file; has_audio comes from the generator, so scanning is never needed
        # The file name comes from an annotation file: it must stay inside data_dir (no absolute path, no `../`).
        located = []
        for number, record in enumerate(records):
            path = path_inside(self.config.data_dir, record["video"], f"{self.DATASET_NAME} annotation {number + 1} "
                                                                      f"(video_id {record.get('video_id')!r})")
            located.append({**record, "video": path if os.path.isfile(path) else None})
        return located


BUILDERS: dict[str, type[VideoTextBuilder]] = {
    "msrvtt": MsrvttBuilder,
    "vatex": VatexBuilder,
    "charades": CharadesBuilder,
    "synthetic": SyntheticBuilder,
}
