"""Retrieval metrics against hand-computed ranks: ties, multi-caption protocol, dual softmax, evaluate module."""

import os

import numpy as np
import pytest
import torch

from builders import REPO
from modeling_avigate.retrieval_metrics import (
    collapse_captions,
    ground_truth_ranks,
    metrics_from_ranks,
    retrieval_metrics,
    text_video_retrieval_metrics,
)


METRIC_DIR = os.path.join(REPO, "modeling_avigate", "metrics", "retrieval")


def test_diagonal_ranks_by_hand():
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.0],  # gt 0.9 is the best -> 1
            [0.8, 0.7, 0.9, 0.1],  # 0.8 and 0.9 beat 0.7 -> 3
            [0.1, 0.2, 0.3, 0.4],  # 0.4 beats 0.3 -> 2
            [0.5, 0.6, 0.7, 0.1],  # worst -> 4
        ]
    )
    np.testing.assert_array_equal(ground_truth_ranks(scores), [1, 3, 2, 4])
    metrics = retrieval_metrics(scores)
    assert metrics == {"R@1": 25.0, "R@5": 100.0, "R@10": 100.0, "MdR": 2.5, "MnR": 2.5}


def test_ties_pessimistic_optimistic_mean():
    # Query 0: ground truth ties with two others, one candidate is higher.
    scores = np.array([[0.5, 0.5, 0.9, 0.5, 0.1]])
    assert ground_truth_ranks(scores, [0]).tolist() == [4.0]  # 1 higher + 2 tied ahead
    assert ground_truth_ranks(scores, [0], ties="optimistic").tolist() == [2.0]
    assert ground_truth_ranks(scores, [0], ties="mean").tolist() == [3.0]
    # A constant score matrix must not look perfect.
    constant = np.zeros((3, 3))
    assert retrieval_metrics(constant)["R@1"] == 0.0
    assert retrieval_metrics(constant)["MnR"] == 3.0
    with pytest.raises(ValueError, match="ties"):
        ground_truth_ranks(scores, [0], ties="random")


def test_recall_at_ten_and_median_by_hand():
    ranks = np.array([1, 2, 5, 6, 10, 11, 30])
    metrics = metrics_from_ranks(ranks)
    assert metrics["R@1"] == pytest.approx(100 / 7)
    assert metrics["R@5"] == pytest.approx(300 / 7)
    assert metrics["R@10"] == pytest.approx(500 / 7)
    assert metrics["MdR"] == 6.0
    assert metrics["MnR"] == pytest.approx(65 / 7)


def test_multi_caption_protocol_by_hand():
    # 5 captions, 3 videos; captions 0, 1 -> video 0; 2 -> video 1; 3, 4 -> video 2.
    scores = np.array(
        [
            [0.2, 0.9, 0.1],  # caption 0 (video 0): rank 2
            [0.8, 0.3, 0.4],  # caption 1 (video 0): rank 1
            [0.7, 0.6, 0.5],  # caption 2 (video 1): rank 2
            [0.1, 0.9, 0.2],  # caption 3 (video 2): rank 2
            [0.3, 0.4, 0.4],  # caption 4 (video 2): ties with video 1 -> rank 2 pessimistic
        ]
    )
    owners = [0, 0, 1, 2, 2]
    np.testing.assert_array_equal(ground_truth_ranks(scores, owners), [2, 1, 2, 2, 2])
    # Video→text (CLIP4Clip): video v vs. the best caption of each video u.
    # video 0: u0 = max(0.2, 0.8) = 0.8, u1 = 0.7, u2 = max(0.1, 0.3) = 0.3 -> rank 1
    # video 1: u0 = max(0.9, 0.3) = 0.9, u1 = 0.6, u2 = max(0.9, 0.4) = 0.9 -> rank 3
    # video 2: u0 = max(0.1, 0.4) = 0.4, u1 = 0.5, u2 = max(0.2, 0.4) = 0.4 -> rank 3 (pessimistic: u0 ties)
    collapsed = collapse_captions(scores, owners)
    np.testing.assert_allclose(collapsed, [[0.8, 0.7, 0.3], [0.9, 0.6, 0.9], [0.4, 0.5, 0.4]])
    metrics = text_video_retrieval_metrics(scores, owners)
    assert metrics["t2v/R@1"] == pytest.approx(20.0)
    assert metrics["t2v/MnR"] == pytest.approx(9 / 5)
    assert metrics["v2t/R@1"] == pytest.approx(100 / 3)
    assert metrics["v2t/MdR"] == 3.0
    assert metrics["v2t/MnR"] == pytest.approx(7 / 3)


def test_one_to_one_both_directions_and_torch_input():
    scores = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 0.0, 5.0]])
    metrics = text_video_retrieval_metrics(scores)
    # t2v ranks: 1, 2, 1; v2t (columns): video0 [3,0,1] -> 1, video1 [1,1,0] -> 2 (tie), video2 [2,2,5] -> 1
    assert metrics["t2v/MnR"] == pytest.approx(4 / 3)
    assert metrics["v2t/MnR"] == pytest.approx(4 / 3)
    assert metrics["v2t/R@1"] == pytest.approx(200 / 3)


def test_captionless_video_is_not_a_video_to_text_query():
    scores = np.array([[0.9, 0.1, 0.8]])
    metrics = text_video_retrieval_metrics(scores, text_to_video=[0])
    assert metrics["v2t/R@1"] == 100.0  # only video 0 is a query


def test_dual_softmax_is_off_by_default_and_labelled():
    # Video 0 is everyone's favourite: plain t2v ranks are 1 and 2; the dual softmax prior (softmax over captions per
    # video) down-weights it for caption 1, which then finds its video.
    scores = np.array([[10.0, 1.0], [9.0, 8.0]])
    plain = text_video_retrieval_metrics(scores)
    assert plain["t2v/R@1"] == 50.0 and not any("dsl" in key for key in plain)
    renormalised = text_video_retrieval_metrics(scores, dual_softmax_temperature=1.0)
    assert renormalised["t2v+dsl/R@1"] == 100.0
    assert not any(key.startswith("t2v/") for key in renormalised)


def test_invalid_inputs_name_the_problem():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="diagonal"):
        retrieval_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ground_truth indices"):
        retrieval_metrics(np.zeros((2, 3)), ground_truth=[0, 3])


def test_evaluate_metric_module_matches_functions():
    import evaluate

    metric = evaluate.load(METRIC_DIR)
    scores = np.array([[0.2, 0.9, 0.1], [0.8, 0.3, 0.4], [0.7, 0.6, 0.5], [0.1, 0.9, 0.2], [0.3, 0.4, 0.4]])
    owners = [0, 0, 1, 2, 2]
    for row, owner in zip(scores[:2], owners[:2]):
        metric.add(predictions=row, references=owner)
    metric.add_batch(predictions=scores[2:], references=owners[2:])
    assert metric.compute() == text_video_retrieval_metrics(scores, owners)
    labelled = metric.compute(predictions=scores, references=owners, dual_softmax_temperature=0.5)
    assert set(labelled) == {f"{d}+dsl/{m}" for d in ("t2v", "v2t") for m in ("R@1", "R@5", "R@10", "MdR", "MnR")}
