"""Robustness to noisy audio: a test split's sound tracks replaced by, or mixed with, a corruption at a chosen
signal-to-noise ratio, turned into the frozen AST's states that every model trained on the same AST reads.

Corruptions (`CORRUPTIONS`):

- `other_track`: another clip's track (a fixed derangement of the clips that have one: no clip keeps its own);
- `noise`, `tones`: the synthetic benchmark's noise types (`render_sound`), drawn anew per clip;
- `silence`: an all-zero track (replacement only: a mix with silence is the clean track).

A track is mixed as `signal + g · corruption`, with `g` such that `10 log10(P_signal / (g² P_corruption))` is the
SNR in dB; `snr_db=None` replaces the track. Clips without a track keep none. Everything is deterministic given
`seed`, and the clean waveforms passed in are never modified.
"""

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from .data.synthetic import render_sound
from .feature_cache import FeatureCache
from .modeling_avigate import AvigateModel
from .processors import AvigateFeatureExtractor, AvigateProcessor
from .processors.video_io import read_video


CORRUPTIONS = ("other_track", "noise", "tones", "silence")


def read_tracks(paths: Sequence[str], sampling_rate: int = 16000) -> list[np.ndarray | None]:
    """Each file's mono sound track at `sampling_rate` (`None` for a file without one)."""
    tracks = []
    for path in paths:
        audio = read_video(path, 1, 32, (32, 32), read_audio=True, sampling_rate=sampling_rate).audio
        tracks.append(None if audio is None or audio.size == 0 else audio.astype(np.float32))
    return tracks


def mix_at_snr(signal: np.ndarray, corruption: np.ndarray, snr_db: float | None) -> np.ndarray:
    """`signal` with `corruption` added at `snr_db` dB (`None`: the corruption alone), as a new float32 array.

    Example: a signal of power 1 and a corruption of power 4 at 0 dB → the corruption is scaled by 0.5.

    ```python
    >>> import numpy as np
    >>> from modeling_avigate.robustness import mix_at_snr
    >>> mix_at_snr(np.ones(4), 2 * np.ones(4), 0.0).tolist()
    [2.0, 2.0, 2.0, 2.0]
    ```
    """
    corruption = np.resize(corruption, signal.shape).astype(np.float64)  # repeated or cut to the signal's length
    if snr_db is None:
        return corruption.astype(np.float32)
    signal_power, corruption_power = np.mean(signal.astype(np.float64) ** 2), np.mean(corruption**2)
    gain = np.sqrt(signal_power / (corruption_power * 10 ** (snr_db / 10))) if corruption_power > 0 else 0.0
    return (signal + gain * corruption).astype(np.float32)


def other_track_partners(has_track: Sequence[bool], seed: int = 0) -> dict[int, int]:
    """For each clip with a track, the clip whose track replaces it: a random cycle through those clips, so none is
    paired with itself (with at least two of them)."""
    indices = np.flatnonzero(np.asarray(has_track, dtype=bool))
    order = indices[np.random.default_rng([seed, 0]).permutation(len(indices))]
    return {int(a): int(b) for a, b in zip(order, np.roll(order, -1))}


def corrupt_tracks(tracks: Sequence[np.ndarray | None], corruption: str, snr_db: float | None,
                   seed: int = 0) -> list[np.ndarray | None]:
    """New waveforms: each track with `corruption` at `snr_db` (see the module's docstring); `None` stays `None`."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"`corruption` must be one of {CORRUPTIONS}, got {corruption!r}")
    if corruption == "silence" and snr_db is not None:
        raise ValueError("silence replaces a track (`snr_db=None`); mixed in, it would leave the track as it is")
    partners = other_track_partners([track is not None for track in tracks], seed)
    corrupted = []
    for index, track in enumerate(tracks):
        if track is None:
            corrupted.append(None)
            continue
        if corruption == "other_track":
            source = tracks[partners[index]]
        elif corruption == "silence":
            source = np.zeros_like(track)
        else:
            source = render_sound(corruption, np.random.default_rng([seed, 1, index]), len(track) / 16000)
        corrupted.append(mix_at_snr(track, source, snr_db))
    return corrupted


def track_fbanks(extractor: AvigateFeatureExtractor, tracks: Sequence[np.ndarray | None]) -> np.ndarray:
    """The fbank of each track, `[N, max_length, num_mel_bins]` float32; zeros for a clip without one (as the
    processor gives it: `has_audio` closes its gates)."""
    empty = np.zeros((extractor.max_length, extractor.num_mel_bins), dtype=np.float32)
    return np.stack([empty if track is None else extractor(track, sampling_rate=extractor.sampling_rate)
                     ["input_values"][0] for track in tracks])


def _corrupted_fbanks(extractor: AvigateFeatureExtractor, tracks: Sequence[np.ndarray | None],
                      condition: tuple[str, float | None], seed: int) -> np.ndarray:
    return track_fbanks(extractor, corrupt_tracks(tracks, *condition, seed=seed))


@torch.no_grad()
def corrupted_audio_caches(model: AvigateModel, processor: AvigateProcessor, video_ids: Sequence[str],
                           tracks: Sequence[np.ndarray | None], conditions: Sequence[tuple[str, float | None]],
                           seed: int = 0, num_proc: int = 1, batch_size: int = 64) -> dict:
    """For each `(corruption, snr_db)` condition, an in-memory audio cache (what `--audio_cache` holds: `model`'s
    frozen AST states before its final LayerNorm, and `has_audio`) of the corrupted tracks, keyed by `video_ids`, for
    `evaluate_retrieval(..., audio_cache=...)`. The fbanks (numpy only) are computed in `num_proc` forked processes."""
    jobs = [(processor.feature_extractor, tracks, condition, seed) for condition in conditions]
    if num_proc > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("fork")) as pool:
            fbanks = list(pool.map(_corrupted_fbanks, *zip(*jobs)))
    else:
        fbanks = [_corrupted_fbanks(*job) for job in jobs]
    rows = {video_id: row for row, video_id in enumerate(video_ids)}
    has_audio = np.array([track is not None for track in tracks])
    caches = {}
    for condition, condition_fbanks in zip(conditions, fbanks):
        states = [model.get_audio_hidden_states(torch.from_numpy(condition_fbanks[start : start + batch_size])
                                                .to(model.dtype)).float().numpy()
                  for start in range(0, len(condition_fbanks), batch_size)]
        caches[condition] = FeatureCache(os.devnull, rows, {"audio_hidden_states": np.concatenate(states),
                                                            "has_audio": has_audio}, "in-memory")
    return caches
