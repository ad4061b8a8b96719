# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Audio feature extractor of AVIGATE: Kaldi-compatible log-mel filter banks for the AST audio tower."""

import warnings
from numbers import Integral
from typing import Any, Literal

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType

from .audio_decoding import resample_audio


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

    Waveforms may come at any rate and with several channels: channels are reduced to one (`audio_channel`), then
    FFmpeg's resampler (the one used for sound tracks in files) brings them to `sampling_rate`. The waveform's mean is
    removed first (as the reference does). Waveforms shorter than one 25 ms window are zero-padded to one window.
    Padding frames are zeros before normalisation, as in AST. A missing (`None`) or empty waveform gives zero features
    and `has_audio=False`.

    Args:
        feature_size (`int`, defaults to 1): feature dimension of the raw input (mono audio).
        sampling_rate (`int`, defaults to 16000): rate of the fbank; other rates are resampled to it.
        num_mel_bins (`int`, defaults to 128): mel bins.
        max_length (`int`, defaults to 1024): frames per clip after padding or truncation.
        padding_value (`float`, defaults to 0.0): padding value of the raw waveform (kept for the base class).
        mode (`str`, defaults to `"avigate"`): `"avigate"` or `"ast"`, see above.
        do_normalize (`bool`, defaults to `True`): normalise with `mean` and `std` as `(x - mean) / (2 * std)`.
        mean (`float`, *optional*): defaults to -5.118 in AVIGATE mode, -4.2677393 (AudioSet) in AST mode.
        std (`float`, *optional*): defaults to 3.2527153 in AVIGATE mode, 4.5689974 (AudioSet) in AST mode.
        audio_channel (`str`, defaults to `"mix"`): `"mix"` averages the channels of multichannel sound, `"first"`
            keeps the first channel (what the reference's torchaudio fbank reads). Also how [`AvigateProcessor`] has
            the sound tracks of files decoded (see [`sound_track_kwargs`]).

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

    model_input_names = ["input_values", "has_audio"]

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
        audio_channel: Literal["mix", "first"] = "mix",
        **kwargs,
    ):
        if mode not in ("avigate", "ast"):
            raise ValueError(f"`mode` must be 'avigate' or 'ast', got {mode!r}.")
        if audio_channel not in ("mix", "first"):
            raise ValueError(f"`audio_channel` must be 'mix' or 'first', got {audio_channel!r}.")
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.mode = mode
        self.do_normalize = do_normalize
        default_mean, default_std = (AVIGATE_MEAN, AVIGATE_STD) if mode == "avigate" else (AUDIOSET_MEAN, AUDIOSET_STD)
        self.mean = default_mean if mean is None else mean
        self.std = default_std if std is None else std
        self.audio_channel = audio_channel
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

    def sound_track_kwargs(self) -> dict[str, Any]:
        """[`read_video`]'s sound keywords that decode a file's sound track as this extractor reads it: mono by
        `audio_channel`, at `sampling_rate`, and for a long track only the windows the fbank reads."""
        return {
            "sampling_rate": self.sampling_rate,
            "audio_channel": self.audio_channel,
            "long_audio_windows": self.long_audio_windows(),
        }

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
        raw_speech: np.ndarray | list[float] | list[np.ndarray | None],
        sampling_rate: int | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one waveform or a list of them (`None` items for "no sound").

        Args:
            raw_speech: a waveform (`[samples]`, `[channels, samples]` or soundfile's `[samples, channels]`: the
                shorter axis is taken as channels), a list of floats, or a list of such waveforms or `None`.
            sampling_rate: rate of `raw_speech` in Hz (a positive int); `None` means `self.sampling_rate`.
            return_tensors: `"pt"`, `"np"` or `None` (lists of arrays).

        Returns:
            [`BatchFeature`] with `input_values` `[batch, max_length, num_mel_bins]` (zeros without sound) and
            `has_audio` `[batch]` bool.
        """
        rate = self.sampling_rate if sampling_rate is None else sampling_rate
        if isinstance(rate, bool) or not isinstance(rate, Integral) or rate <= 0:
            raise ValueError(f"`sampling_rate` must be a positive int (Hz), got {sampling_rate!r}.")
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        waveforms = [self._mono(waveform, rate) for waveform in (raw_speech if is_batched else [raw_speech])]
        has_audio = [waveform is not None and waveform.size > 0 for waveform in waveforms]
        features = [
            self._features(waveform) if present else np.zeros((self.max_length, self.num_mel_bins), dtype=np.float32)
            for waveform, present in zip(waveforms, has_audio)
        ]
        data = {"input_values": features, "has_audio": np.array(has_audio)}
        return BatchFeature(data, tensor_type=return_tensors)

    def _mono(self, waveform: np.ndarray | list[float] | None, sampling_rate: int) -> np.ndarray | None:
        """A waveform as mono float32 at `self.sampling_rate`, its channels reduced by `audio_channel`."""
        if waveform is None:
            return None
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim == 2:
            channels_first = waveform if waveform.shape[0] <= waveform.shape[1] else waveform.T
            waveform = channels_first.mean(axis=0) if self.audio_channel == "mix" else channels_first[0]
        elif waveform.ndim != 1:
            raise ValueError(f"Audio waveforms must be 1-D or 2-D, got shape {waveform.shape}.")
        return resample_audio(waveform, sampling_rate, self.sampling_rate)

    def _features(self, waveform: np.ndarray) -> np.ndarray:
        features = self._extract_fbank_features(waveform)
        return self.normalize(features) if self.do_normalize else features


__all__ = ["AvigateFeatureExtractor"]
