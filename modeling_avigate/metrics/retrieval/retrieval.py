# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` metric for text-video retrieval: a thin wrapper over `modeling_avigate.retrieval_metrics`."""

import datasets
import evaluate
import numpy as np
from modeling_avigate.retrieval_metrics import text_video_retrieval_metrics


_DESCRIPTION = """
Text-video retrieval metrics in both directions: R@1, R@5, R@10 (percent), median rank (MdR) and mean rank (MnR).
Each prediction is one caption's row of scores against every video; each reference is the index of that caption's
video. One caption per video in order gives the one-to-one (diagonal) protocol of MSR-VTT 1k-A and Charades; several
captions per video give the multi-caption protocol of VATEX (text→video ranks every caption; video→text counts a
video's best caption, as in CLIP4Clip). Ties are ranked pessimistically unless `ties` says otherwise. Dual-softmax
re-normalisation is off by default; with `dual_softmax_temperature` set, keys are prefixed `t2v+dsl/` and `v2t+dsl/`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: `[num_captions][num_videos]` scores, higher is better (e.g. `AvigateModel.similarity` rows).
    references: `[num_captions]` index of each caption's video.
    ties: "pessimistic" (default), "optimistic" or "mean".
    dual_softmax_temperature: optional float; when set, labelled dual-softmax re-normalisation is applied.
Returns:
    dict with `t2v/R@1`, `t2v/R@5`, `t2v/R@10`, `t2v/MdR`, `t2v/MnR` and the same `v2t/` keys.
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_avigate/metrics/retrieval")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])["t2v/R@1"]
    100.0
"""

_CITATION = """
@inproceedings{jeong2025avigate,
  title={Learning Audio-guided Video Representation with Gated Attention for Video-Text Retrieval},
  author={Jeong, Boseung and Park, Jicheol and Kim, Sungyeon and Kwak, Suha},
  booktitle={CVPR},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    """Text↔video R@K / MdR / MnR from caption-by-video score rows."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, ties: str = "pessimistic",
                 dual_softmax_temperature: float | None = None) -> dict[str, float]:
        return text_video_retrieval_metrics(
            np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.int64), ties=ties,
            dual_softmax_temperature=dual_softmax_temperature,
        )
