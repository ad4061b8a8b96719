# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Audio feature extractor of AVIGATE: Kaldi-compatible log-mel filter banks for the AST audio tower."""

import warnings
from typing import Literal

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType


# Log-mel statistics used to normalise the features: AVIGATE's own (its data loader) and AudioSet's (AST).
AVIGATE_MEAN, AVIGATE_STD = -5.118, 3.2527153
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
# Kaldi's analysis window: 25 ms at 16 kHz, zero-padded to the next power of two for the FFT.
FRAME_LENGTH, FFT_LENGTH = 400, 512
AST_HOP_LENGTH = 160  # 10 ms at 16 kHz


class AvigateFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Log-mel filter bank features `[max_length, num_mel_bins]` for the AST audio tower of AVIGATE, computed exactly as
    `torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, use_energy=False, window_type="hanning",
    dither=0.0, num_mel_bins=128)` (the reference code) but with transformers' numpy `audio_utils`, so neither
    torchaudio nor torch is needed.

    Two framings:

    - `mode="avigate"` (default, the reference AVIGATE loader): the frame shift is `len(waveform) // max_length`
      samples (the clip duration divided by 1024), so a clip of any length fills the 1024 frames; features are
      normalised as `(x + 5.118) / (2 * 3.2527153)`.
    - `mode="ast"`: a 10 ms shift, truncation or zero padding to `max_length` frames and AudioSet statistics; equal
      to transformers' [`ASTFeatureExtractor`].

    The waveform's mean is removed first (as the reference does). Waveforms shorter than one 25 ms window are
    zero-padded to one window. Padding frames are zeros before normalisation, as in AST.

    Args:
        feature_size (`int`, defaults to 1): feature dimension of the raw input (mono audio).
        sampling_rate (`int`, defaults to 16000): the only rate accepted; resample before (the processor does).
        num_mel_bins (`int`, defaults to 128): mel bins.
        max_length (`int`, defaults to 1024): frames per clip after padding or truncation.
        padding_value (`float`, defaults to 0.0): padding value of the raw waveform (kept for the base class).
        mode (`str`, defaults to `"avigate"`): `"avigate"` or `"ast"`, see above.
        do_normalize (`bool`, defaults to `True`): normalise with `mean` and `std` as `(x - mean) / (2 * std)`.
        mean (`float`, *optional*): defaults to -5.118 in AVIGATE mode, -4.2677393 (AudioSet) in AST mode.
        std (`float`, *optional*): defaults to 3.2527153 in AVIGATE mode, 4.5689974 (AudioSet) in AST mode.

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_avigate.processors import AvigateFeatureExtractor
    >>> extractor = AvigateFeatureExtractor()
    >>> waveform = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    >>> extractor(waveform, sampling_rate=16000, return_tensors="np")["input_values"].shape
    (1, 1024, 128)
    ```
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        num_mel_bins: int = 128,
        max_length: int = 1024,
        padding_value: float = 0.0,
        mode: Literal["avigate", "ast"] = "avigate",
        do_normalize: bool = True,
        mean: float | None = None,
        std: float | None = None,
        **kwargs,
    ):
        if mode not in ("avigate", "ast"):
            raise ValueError(f"`mode` must be 'avigate' or 'ast', got {mode!r}.")
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.mode = mode
        self.do_normalize = do_normalize
        default_mean, default_std = (AVIGATE_MEAN, AVIGATE_STD) if mode == "avigate" else (AUDIOSET_MEAN, AUDIOSET_STD)
        self.mean = default_mean if mean is None else mean
        self.std = default_std if std is None else std
        # The same filters and window as ASTFeatureExtractor's numpy path (Kaldi's mel scale and "hanning" window).
        # With 128 bins on a 512-point FFT the lowest Kaldi filters are empty, as in Kaldi: silence that warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            self.mel_filters = mel_filter_bank(
                num_frequency_bins=FFT_LENGTH // 2 + 1,
                num_mel_filters=num_mel_bins,
                min_frequency=20,
                max_frequency=sampling_rate // 2,
                sampling_rate=sampling_rate,
                norm=None,
                mel_scale="kaldi",
                triangularize_in_mel_space=True,
            )
        self.window = window_function(FRAME_LENGTH, "hann", periodic=False)

    def to_dict(self) -> dict:
        output = super().to_dict()
        # Derived from the other fields; keeping them out keeps the saved JSON small and editable.
        output.pop("mel_filters", None)
        output.pop("window", None)
        return output

    def hop_length(self, num_samples: int) -> int:
        """Frame shift in samples: 10 ms in AST mode, `num_samples // max_length` (at least 1) in AVIGATE mode."""
        if self.mode == "ast":
            return AST_HOP_LENGTH
        return max(1, num_samples // self.max_length)

    def long_audio_windows(self) -> tuple[int, int] | None:
        """`(count, length)` of the analysis windows the fbank reads from a long waveform: the decoder keeps only
        these for long sound tracks. `None` in AST mode, which reads only the first ~10 s."""
        return (self.max_length, FRAME_LENGTH) if self.mode == "avigate" else None

    def _extract_fbank_features(self, waveform: np.ndarray) -> np.ndarray:
        """Unnormalised log-mel features `[max_length, num_mel_bins]` of one mono waveform."""
        waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
        waveform = waveform - waveform.mean()
        if waveform.shape[0] < FRAME_LENGTH:
            waveform = np.pad(waveform, (0, FRAME_LENGTH - waveform.shape[0]))
        fbank = spectrogram(
            waveform,
            self.window,
            frame_length=FRAME_LENGTH,
            hop_length=self.hop_length(waveform.shape[0]),
            fft_length=FFT_LENGTH,
            power=2.0,
            center=False,
            preemphasis=0.97,
            mel_filters=self.mel_filters,
            log_mel="log",
            mel_floor=1.192092955078125e-07,  # float32 epsilon, Kaldi's floor
            remove_dc_offset=True,
        ).T[: self.max_length]
        features = np.zeros((self.max_length, self.num_mel_bins), dtype=np.float32)
        features[: fbank.shape[0]] = fbank
        return features

    def normalize(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / (2 * self.std)

    def __call__(
        self,
        raw_speech: np.ndarray | list[float] | list[np.ndarray],
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one mono waveform or a list of them into `input_values` `[batch, max_length, num_mel_bins]`.

        Args:
            raw_speech: a 1-D waveform, a list of floats, or a list of 1-D waveforms, sampled at `sampling_rate`.
            sampling_rate: must equal `self.sampling_rate` when given.
            return_tensors: `"pt"`, `"np"` or `None` (list of arrays).
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"`sampling_rate` is {sampling_rate} but {self.__class__.__name__} expects {self.sampling_rate} Hz; "
                "resample first (AvigateProcessor does this for you)."
            )
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        waveforms = list(raw_speech) if is_batched else [raw_speech]
        for waveform in waveforms:
            if np.ndim(waveform) != 1:
                raise ValueError(f"`raw_speech` must hold mono 1-D waveforms, got shape {np.shape(waveform)}.")
        features = [self._extract_fbank_features(waveform) for waveform in waveforms]
        if self.do_normalize:
            features = [self.normalize(feature) for feature in features]
        return BatchFeature({"input_values": features}, tensor_type=return_tensors)


__all__ = ["AvigateFeatureExtractor"]
