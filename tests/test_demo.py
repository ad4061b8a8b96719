"""The main job's quick path (`examples/demo.py --quick`) runs end to end and leaves a loadable, documented model."""

import json
import os
import subprocess
import sys

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_demo_trains_all_gate_modes_and_saves_a_loadable_model(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "demo.py"), "--quick", "--output_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("1. Test retrieval", "2. Learned gates per clip kind", "3. Plot", "4. Example searches"):
        assert heading in result.stdout

    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["results"]) == {"learned", "closed", "open"}
    for mode in summary["results"].values():
        for group in ("overall", "audio_informative", "audio_noise", "no_audio"):
            assert set(mode[group]["text_to_video"]) == {"R@1", "R@5", "R@10"}
    # The learned model's gate magnitudes lie in [0, 1); a clip without a sound track has every gate exactly 0.
    assert all(0 <= summary["gates"][kind]["mean"] < 1 for kind in summary["gates"])
    no_audio = summary["gates"]["no_audio"]
    assert no_audio["max"] == 0.0 and no_audio["attn_gate_by_layer"] == [0.0] * len(no_audio["attn_gate_by_layer"])

    # The caches are built once up front (`train.py --cache_only`), so the training runs, two at a time, only read
    # them; a run that built its own would race the other.
    assert (tmp_path / "cache" / "frames").is_dir() and (tmp_path / "cache" / "audio-0").is_dir()
    assert "caching" in (tmp_path / "runs" / "cache-seed0.log").read_text()
    for mode in ("learned", "closed", "open"):
        assert "caching" not in (tmp_path / "runs" / f"{mode}-seed0.log").read_text()

    model_dir = tmp_path / "avigate-synthetic"
    assert (model_dir / "gates_and_training.png").stat().st_size > 10_000
    card = (model_dir / "README.md").read_text()
    assert "model-index" in card and "synthetic" in card

    from modeling_avigate import AvigateModel, AvigateProcessor

    model = AvigateModel.from_pretrained(model_dir)
    assert model.config.gate_mode == "learned"
    assert AvigateProcessor.from_pretrained(model_dir).num_frames == 8
