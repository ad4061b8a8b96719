"""The main job's quick path (`examples/demo.py --quick`) runs end to end and leaves a loadable, documented model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from builders import REPO, load_script


demo = load_script("examples/demo.py")


def _run(by_kind_r1: dict[str, float]) -> dict:
    return {"by_kind": {kind: {"text_to_video": {"R@1": value}} for kind, value in by_kind_r1.items()},
            "overall": {"text_to_video": {"R@1": sum(by_kind_r1.values()) / len(by_kind_r1)}}}


def test_paired_difference_is_the_mean_and_standard_error_of_per_seed_differences():
    runs = [_run({"a": 80.0}), _run({"a": 90.0}), _run({"a": 70.0})]
    baselines = [_run({"a": 70.0}), _run({"a": 70.0}), _run({"a": 70.0})]
    mean, error = demo.paired_difference(runs, baselines, "a")  # differences 10, 20, 0
    assert mean == pytest.approx(10.0) and error == pytest.approx(10.0 / np.sqrt(3))
    assert np.isnan(demo.paired_difference(runs[:1], baselines[:1], "a")[1])


def test_attribute_matches_count_rank_one_agreement_per_attribute():
    videos = {"video_id": ["v0", "v1", "v2"], "kind": ["audio_informative", "audio_informative", "no_audio"],
              "color": ["red", "red", "blue"], "shape": ["circle", "circle", "square"],
              "direction": ["left", "left", "up"], "background": ["black", "black", "white"],
              "sound": ["high beep", "low hum", "none"]}
    # embedded in another order than the rows; caption i describes video i; rank 1 is v1, v1, v0
    details = {"video_id": ["v2", "v0", "v1"], "caption_video": torch.tensor([1, 2, 0]),
               "similarity": torch.tensor([[0.0, 0.1, 0.9], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]])}
    matches = demo.attribute_matches(details, videos)
    # captions of v0, v1 both retrieve v1 (same visuals, sound right only for v1's); v2's caption retrieves v0
    assert matches["color"] == pytest.approx(200 / 3) and matches["direction"] == pytest.approx(200 / 3)
    assert matches["sound"] == pytest.approx(50.0)  # over the two captions that name a sound


def test_a_failed_training_run_stops_the_demo_naming_its_log(tmp_path):
    # Runs are forked from a server process, not started with subprocess: the child's output must still reach the
    # log, and its failure the caller.
    log = tmp_path / "runs" / "broken.log"
    with pytest.raises(SystemExit, match="broken.log"):
        demo.launch_train(["--epochs", "many"], str(log))
    assert "invalid int value: 'many'" in log.read_text()


@pytest.mark.slow
def test_quick_demo_trains_all_gate_modes_and_saves_a_loadable_model(tmp_path):
    # One epoch per run instead of the quick path's 4: the path is the same, each run shorter.
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "demo.py"), "--quick", "--epochs", "1", "--output_dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("1. Stage 1", "2. Test retrieval", "3. Text→video R@1 per clip kind", "4. The floor",
                    "5. What the models learned", "6. Learned gates per clip kind", "7. Robustness",
                    "8. AVIGATE's mean |gate| per clip kind under each corruption", "9. Plots", "10. Example searches"):
        assert heading in result.stdout
    # Phases report elapsed time, every run reports when it is done, and no progress bar is left in the report.
    assert "6/6 saving" in result.stdout and result.stdout.count("] trained ") == 3
    report = result.stdout.split("\n1. Stage 1")[1]
    assert "\r" not in report and "it/s" not in report
    searches = report.split("10. Example searches")[1].split("\nmodel, processor")[0]
    results = [line for line in searches.splitlines() if line.startswith("  ")]
    assert searches.count("query: ") == 3 and len(results) == 9  # top 3 of an informative, offscreen, silent caption
    assert all((" correct " in line or " wrong " in line) and " gate " in line for line in results)
    assert all(" gate 0.000  [no_audio]" in line for line in results if "[no_audio]" in line)

    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["results"]) == {"learned", "closed", "open"}
    for mode in summary["results"].values():
        for group in ("overall", "audio_informative", "audio_offscreen", "audio_noise", "no_audio"):
            assert set(mode[group]["text_to_video"]) == {"R@1", "R@5", "R@10"}
    # Per-attribute matches are percentages; with one seed the paired differences have no standard error.
    assert set(summary["attributes"]["learned"]) == {"color", "shape", "direction", "background", "sound"}
    assert all(0 <= value <= 100 for table in summary["attributes"].values() for value in table.values())
    difference = summary["text_to_video_R@1"]["audio_offscreen"]["difference_vs"]["open"]
    per_seed = summary["results"]["learned"]["per_seed"][0]["by_kind"]["audio_offscreen"]["text_to_video"]["R@1"]
    per_seed -= summary["results"]["open"]["per_seed"][0]["by_kind"]["audio_offscreen"]["text_to_video"]["R@1"]
    assert difference["mean"] == pytest.approx(per_seed)
    # The learned model's gate magnitudes lie in [0, 1); a clip without a sound track has every gate exactly 0.
    assert all(0 <= summary["gates"][kind]["mean"] < 1 for kind in summary["gates"])
    no_audio = summary["gates"]["no_audio"]
    assert no_audio["max"] == 0.0 and no_audio["attn_gate_by_layer"] == [0.0] * len(no_audio["attn_gate_by_layer"])

    # Stage 1 ran once into its marked folder; its towers are what stage 2 started from (the card says so).
    assert set(summary["stage_1"]["quality"]["clip_zero_shot"]) >= {"color", "shape", "direction", "background"}
    assert (tmp_path / "pretrained" / "clip" / "model.safetensors").is_file()
    assert summary["clip_only_floor"]["overall"]["clip_only"] >= 0
    # Robustness: every condition for AVIGATE and ungated fusion; the gates of clips without a track stay 0.
    assert set(summary["robustness"]) == {demo.condition_name(condition) for condition in demo.CONDITIONS}
    assert all(entry["gates"]["no_audio"] == 0.0 for entry in summary["robustness"].values())

    # The caches are built once up front (`train.py --cache_only`), so the training runs, two at a time, only read
    # them; a run that built its own would race the other.
    assert (tmp_path / "cache" / "frames").is_dir() and (tmp_path / "cache" / "audio").is_dir()
    assert "caching" in (tmp_path / "runs" / "cache.log").read_text()
    for mode in ("learned", "closed", "open"):
        assert "caching" not in (tmp_path / "runs" / f"{mode}-seed0.log").read_text()

    model_dir = tmp_path / "avigate-synthetic"
    assert (model_dir / "gates_and_training.png").stat().st_size > 10_000
    assert (model_dir / "robustness.png").stat().st_size > 10_000
    card = (model_dir / "README.md").read_text()
    assert "model-index" in card and "synthetic" in card
    assert f"CLIP towers from `{tmp_path / 'pretrained' / 'clip'}`" in card
    assert "for 1 epoch, global batch 32 filled with look-alike groups (`color,background:8`), 4 frames" in card

    from modeling_avigate import AvigateModel, AvigateProcessor

    model = AvigateModel.from_pretrained(model_dir)
    assert model.config.gate_mode == "learned"
    assert AvigateProcessor.from_pretrained(model_dir).video_processor.num_frames == 4
