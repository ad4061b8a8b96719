"""The synthetic audio-visual retrieval benchmark: small real `.mp4` clips whose captions need the sound track.

Every clip shows a coloured shape moving over a plain background. What it tests is in the sound:

- *audio-informative* clips (a third) carry a sound event that the caption names ("... with a high beep"), and
  its source is on screen: a magenta loudspeaker in the top-left corner. Each has a **visual twin** in the same
  split: same shape, colour, direction and background, same caption template, a different event. Only the audio
  tells the twins apart, so a visual-only model tops out at about 50 % R@1 on them.
- *audio-offscreen* clips (a quarter) carry one of the same four events, but no loudspeaker is visible and the
  caption does not mention the sound. The rule is "a sound is described when its loudspeaker is visible": only
  the frames say whether this clip's beep belongs in its embedding, which a gate (a function of frames and audio)
  can see and ungated fusion cannot switch off.
- *audio-noise* clips (a sixth) carry an unrelated track (steady coloured noise or a random melody) that the
  caption does not mention. Fusing it blindly can only hurt; a gate should close.
- *no-audio* clips (the rest, about a quarter) have no sound track at all.

The sound events are built to be told apart in a 128-bin log-mel fbank: a 2.4-2.8 kHz pulsed beep, a steady
100-140 Hz hum with harmonics, a 300 Hz -> 4 kHz rising sweep, and a train of broadband clicks. The noise tracks
avoid all four patterns (steady broadband noise, or stepped notes in 250-900 Hz).

Generation is deterministic: the plan of a split depends only on `(seed, split)`, and each clip's random draws
only on `(seed, split, index)`, so the same arguments write byte-identical files on the same PyAV/FFmpeg build.

Command line (`main`, run through the package's `__main__`):

```
python -m modeling_avigate.data OUT_DIR [--seed 0] [--preset default|quick] [--num-proc N]
```
"""

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Optional

import numpy as np

from ..folders import FolderOwnershipError, is_owned, read_marker, write_marker


logger = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (40, 70, 230), "yellow": (235, 215, 20)}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
SOUND_EVENTS = ("high beep", "low hum", "rising chirp", "click train")
NOISE_SOUNDS = ("noise", "tones")
NO_SOUND = "none"
TARGET_RMS = 0.15
SHAPE_RADIUS = 0.22  # in frame widths
START_OFFSET = 0.2  # where the shape starts: this far from the centre toward its direction, in frame widths
TRAVEL = 0.15  # how far it moves over the clip, in frame widths
STREAK_LAGS = (0.3, 0.2, 0.1)  # distance behind the shape, in frame widths
STREAK_STRENGTHS = (0.2, 0.35, 0.5)  # share of the shape's colour over the background

SPEAKER_COLOR = (230, 40, 230)  # magenta: unlike every shape colour and background

AUDIO_INFORMATIVE = "audio_informative"
AUDIO_OFFSCREEN = "audio_offscreen"
AUDIO_NOISE = "audio_noise"
NO_AUDIO = "no_audio"
KINDS = (AUDIO_INFORMATIVE, AUDIO_OFFSCREEN, AUDIO_NOISE, NO_AUDIO)

# `pretrain` is the towers' pretraining split (`modeling_avigate.pretraining`), never one of the benchmark's; appended
# last, so the other splits keep their random draws.
SPLITS = ("train", "validation", "test", "pretrain")
PRESETS = {
    "default": {"train": 600, "validation": 120, "test": 168},
    "quick": {"train": 152, "validation": 32, "test": 32},
}

VISUAL_TEMPLATES = (
    "a {color} {shape} moves {direction} on a {background} background",
    "a {color} {shape} moving {direction} over a {background} background",
    "on a {background} background a {color} {shape} moves {direction}",
)
SOUND_TEMPLATES = ("{visual} with a {sound}", "{visual} while a {sound} plays")
# What the pretraining captions add to a visual caption when the loudspeaker is on screen (`modeling_avigate.pretraining`).
SPEAKER_PHRASE = "beside a loudspeaker"

VOCAB_FILE = "synthetic_vocab.json"
MERGES_FILE = "synthetic_merges.txt"
INFO_FILE = "synthetic_info.json"
# Raised whenever the same arguments would write different clips, so an earlier set is rewritten rather than reused.
FORMAT_VERSION = 4
FOLDER_KIND = "synthetic_benchmark"  # the ownership marker of an output folder (`modeling_avigate.folders`)


def synthetic_words() -> list[str]:
    """Every word the caption templates can produce (the synthetic tokenizer's vocabulary)."""
    texts = list(VISUAL_TEMPLATES) + list(SOUND_TEMPLATES) + [SPEAKER_PHRASE]
    texts += list(SHAPES) + list(COLORS) + list(DIRECTIONS) + list(BACKGROUNDS) + list(SOUND_EVENTS)
    words = set()
    for text in texts:
        for word in text.split():
            if not word.startswith("{"):
                words.add(word)
    return sorted(words)


def synthetic_tokenizer():
    """The tiny CLIP-format tokenizer shipped with the package; it spells every caption word without unknown tokens.

    Example:

    ```python
    >>> from modeling_avigate.data import synthetic_tokenizer
    >>> tokenizer = synthetic_tokenizer()
    >>> tokenizer.convert_ids_to_tokens(tokenizer("a red circle moves left")["input_ids"])[1:-1]
    ['a</w>', 'red</w>', 'circle</w>', 'moves</w>', 'left</w>']
    ```
    """
    from transformers import CLIPTokenizer

    package = resources.files(__package__)
    return CLIPTokenizer(str(package / VOCAB_FILE), str(package / MERGES_FILE))


@dataclass(frozen=True)
class ClipSpec:
    """What one synthetic clip shows and sounds like; one row of a split's `{split}.jsonl` (without `index`)."""

    video_id: str
    video: str  # relative to the benchmark folder
    caption: str
    kind: str
    has_audio: bool
    shape: str
    color: str
    direction: str
    background: str
    sound: str  # a SOUND_EVENTS name, a NOISE_SOUNDS name, or NO_SOUND
    twin_id: Optional[str]  # the visual twin of an audio-informative clip, else None
    index: int  # position in the split; with the seed it picks the clip's random draws


@dataclass(frozen=True)
class SyntheticSettings:
    """Rendering settings: small enough that the default set writes in well under a minute on 2 cores."""

    frame_size: int = 64
    fps: int = 8
    duration: float = 2.0
    sample_rate: int = 16000
    video_codec: str = "libx264"
    audio_bitrate: int = 48000  # FFmpeg's AAC encoder is ~2x faster at 48 kb/s than at its 128 kb/s default


def _caption(visual: dict, template: int, sound: Optional[str], sound_template: int) -> str:
    text = VISUAL_TEMPLATES[template].format(**visual)
    if sound is None:
        return text
    return SOUND_TEMPLATES[sound_template].format(visual=text, sound=sound)


def plan_split(split: str, num_clips: int, seed: int = 0) -> list[ClipSpec]:
    """Decide kinds, visuals, sounds and captions of one split (no files written).

    A split of `n` clips has `n // 6` twin pairs (audio-informative), `n // 4` audio-offscreen clips, `n // 6`
    audio-noise clips and the rest without audio. Visual combinations (shape x color x direction x background, 144
    of them) are drawn without replacement until exhausted, so val/test clips never share visuals except twins (up to
    172 clips a split), and the train split repeats each combination as rarely as possible. Twin pairs cycle through
    the 6 unordered pairs of events so every event is equally frequent; offscreen clips draw their event uniformly.

    Example:

    ```python
    >>> from modeling_avigate.data.synthetic import plan_split
    >>> clips = plan_split("test", 12, seed=0)
    >>> from collections import Counter
    >>> sorted(Counter(clip.kind for clip in clips).items())
    [('audio_informative', 4), ('audio_noise', 2), ('audio_offscreen', 3), ('no_audio', 3)]
    ```
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
    if num_clips < 6:
        raise ValueError(f"a split needs at least 6 clips (a twin pair and one clip of each other kind), got "
                         f"num_clips={num_clips}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    num_pairs = num_noise = num_clips // 6
    num_offscreen = num_clips // 4
    num_silent = num_clips - 2 * num_pairs - num_offscreen - num_noise

    combos = list(itertools.product(SHAPES, COLORS, DIRECTIONS, BACKGROUNDS))
    order: list[int] = []
    while len(order) < num_pairs + num_offscreen + num_noise + num_silent:
        order.extend(rng.permutation(len(combos)).tolist())
    visuals = [dict(zip(("shape", "color", "direction", "background"), combos[i])) for i in order]

    event_pairs = list(itertools.combinations(SOUND_EVENTS, 2))
    pair_order: list[int] = []
    while len(pair_order) < num_pairs:
        pair_order.extend(rng.permutation(len(event_pairs)).tolist())

    # (visual, kind, sound, template, sound template, twin group) before ids are assigned
    drafts = []
    for pair in range(num_pairs):
        template, sound_template = int(rng.integers(len(VISUAL_TEMPLATES))), int(rng.integers(len(SOUND_TEMPLATES)))
        for sound in event_pairs[pair_order[pair]]:
            drafts.append((visuals[pair], AUDIO_INFORMATIVE, sound, template, sound_template, pair))
    kinds = [AUDIO_OFFSCREEN] * num_offscreen + [AUDIO_NOISE] * num_noise + [NO_AUDIO] * num_silent
    for offset, kind in enumerate(kinds):
        sound = {AUDIO_OFFSCREEN: SOUND_EVENTS, AUDIO_NOISE: NOISE_SOUNDS}.get(kind)
        sound = NO_SOUND if sound is None else sound[int(rng.integers(len(sound)))]
        drafts.append((visuals[num_pairs + offset], kind, sound, int(rng.integers(len(VISUAL_TEMPLATES))), 0, None))

    # shuffle so twins are not neighbours and kinds are interleaved in file order
    drafts = [drafts[i] for i in rng.permutation(len(drafts))]
    ids = [f"{split}_{index:04d}" for index in range(len(drafts))]
    group_members: dict[int, list[str]] = {}
    for video_id, draft in zip(ids, drafts):
        if draft[5] is not None:
            group_members.setdefault(draft[5], []).append(video_id)

    clips = []
    for index, (video_id, (visual, kind, sound, template, sound_template, group)) in enumerate(zip(ids, drafts)):
        twin_id = None if group is None else next(other for other in group_members[group] if other != video_id)
        clips.append(
            ClipSpec(
                video_id=video_id,
                video=f"videos/{video_id}.mp4",
                caption=_caption(visual, template, sound if kind == AUDIO_INFORMATIVE else None, sound_template),
                kind=kind,
                has_audio=kind != NO_AUDIO,
                sound=sound,
                twin_id=twin_id,
                index=index,
                **visual,
            )
        )
    return clips


def render_frames(clip: ClipSpec, rng: np.random.Generator, settings: SyntheticSettings) -> np.ndarray:
    """RGB frames `[T, S, S, 3]` uint8: the shape starts on its direction's side of the frame (20 % of the frame from
    the centre) and moves 15 % further toward that edge, trailing a fading motion streak; an audio-informative clip
    also shows its sound's source, a loudspeaker in the top-left corner.

    Every single frame shows the direction twice over: by the streak behind the shape (as motion blur does in real
    video) and by the shape's side of the frame. The second matters to models that average their frames, for which
    a shape crossing the centre would look the same moving either way; starting off-centre keeps the shape on its
    side in every frame, so a vision tower whose patches split the frame in halves sees it in one half."""
    size, num_frames = settings.frame_size, int(round(settings.fps * settings.duration))
    radius = SHAPE_RADIUS * size
    dx, dy = DIRECTIONS[clip.direction]
    travel = TRAVEL * size
    # random offset across the motion so clips with equal visuals still differ in pixels
    across = rng.uniform(-0.1, 0.1) * size
    along = (START_OFFSET + rng.uniform(-0.05, 0.05)) * size
    start_x = size / 2 + (along * dx) + (across * abs(dy))
    start_y = size / 2 + (along * dy) + (across * abs(dx))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    background, color = np.asarray(BACKGROUNDS[clip.background]), np.asarray(COLORS[clip.color])
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = background
    for t in range(num_frames):
        progress = t / max(num_frames - 1, 1)
        cx, cy = start_x + dx * travel * progress, start_y + dy * travel * progress
        # the streak: three fading copies behind the shape, the faintest drawn first
        for lag, strength in zip(STREAK_LAGS, STREAK_STRENGTHS):
            mask = _shape_mask(clip.shape, xx - (cx - dx * lag * size), yy - (cy - dy * lag * size), radius)
            frames[t][mask] = np.round(strength * color + (1 - strength) * background).astype(np.uint8)
        frames[t][_shape_mask(clip.shape, xx - cx, yy - cy, radius)] = color
    if clip.kind == AUDIO_INFORMATIVE:
        _draw_speaker(frames, size)
    return frames


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Pixels of `shape` centred at the origin of the offsets `x`, `y`."""
    if shape == "circle":
        return x**2 + y**2 <= radius**2
    if shape == "square":
        # sides as long as the circle's diameter: at 32 pixels a smaller square was taken for the circle
        return (np.abs(x) <= radius) & (np.abs(y) <= radius)
    # upward triangle: width grows linearly from the apex to the base
    depth = (y + radius) / (1.9 * radius)
    return (depth >= 0) & (depth <= 1) & (np.abs(x) <= depth * radius * 1.1)


def _draw_speaker(frames: np.ndarray, size: int) -> None:
    """A loudspeaker (a box and a cone widening to the right) in the top-left corner, drawn over the shape."""
    unit = max(1, size // 32)
    frames[:, 3 * unit : 7 * unit, 1 * unit : 4 * unit] = SPEAKER_COLOR
    for column in range(4 * unit, 8 * unit):
        spread = (column - 4 * unit) // 2
        frames[:, 3 * unit - spread : 7 * unit + spread, column] = SPEAKER_COLOR


def _envelope(num_samples: int, sample_rate: int, fade: float = 0.01) -> np.ndarray:
    """Linear fade in/out so tone edges do not click (clicks would blur the event classes)."""
    ramp = max(1, min(int(fade * sample_rate), num_samples // 2))
    env = np.ones(num_samples, dtype=np.float64)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    return env


def render_sound(sound: str, rng: np.random.Generator, duration: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform for a `SOUND_EVENTS` or `NOISE_SOUNDS` name, at RMS 0.15 (peak at most 0.9).

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_avigate.data.synthetic import render_sound
    >>> wave = render_sound("high beep", np.random.default_rng(0))
    >>> wave.shape, wave.dtype, round(float(np.sqrt(np.mean(wave**2))), 2)
    ((32000,), dtype('float32'), 0.15)
    ```
    """
    num_samples = int(round(duration * sample_rate))
    t = np.arange(num_samples) / sample_rate
    wave = np.zeros(num_samples)
    if sound == "high beep":  # 3-4 short pulses of a 2.4-2.8 kHz tone
        freq, pulse, gap = rng.uniform(2400, 2800), rng.uniform(0.16, 0.22), rng.uniform(0.12, 0.18)
        start = rng.uniform(0.0, 0.2)
        while start + pulse <= duration:
            a, b = int(start * sample_rate), int((start + pulse) * sample_rate)
            wave[a:b] = np.sin(2 * np.pi * freq * t[a:b]) * _envelope(b - a, sample_rate)
            start += pulse + gap
    elif sound == "low hum":  # steady 100-140 Hz tone with two harmonics, whole clip
        f0 = rng.uniform(100, 140)
        wave = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t) + 0.25 * np.sin(6 * np.pi * f0 * t)
        wave *= _envelope(num_samples, sample_rate, fade=0.05)
    elif sound == "rising chirp":  # two exponential sweeps 300 Hz -> 4 kHz
        sweep = rng.uniform(0.75, 0.9)
        f_start, f_end = rng.uniform(280, 340), rng.uniform(3600, 4200)
        for start in (rng.uniform(0.0, 0.1), rng.uniform(1.0, duration - sweep)):
            a = int(start * sample_rate)
            b = min(num_samples, a + int(sweep * sample_rate))
            local = t[: b - a]
            k = np.log(f_end / f_start) / sweep
            phase = 2 * np.pi * f_start * (np.exp(k * local) - 1) / k
            wave[a:b] = np.sin(phase) * _envelope(b - a, sample_rate)
    elif sound == "click train":  # 8-12 Hz train of 12 ms decaying broadband bursts
        rate = rng.uniform(8, 12)
        burst = int(0.012 * sample_rate)
        decay = np.exp(-np.arange(burst) / (0.003 * sample_rate))
        for start in np.arange(rng.uniform(0, 1 / rate), duration - 0.015, 1 / rate):
            a = int(start * sample_rate)
            wave[a : a + burst] = rng.uniform(-1, 1, burst) * decay
    elif sound == "noise":  # steady noise with a random spectral slope, from white (0) to pink (0.5) to brown (1)
        spectrum = np.fft.rfft(rng.standard_normal(num_samples))
        freqs = np.fft.rfftfreq(num_samples, 1 / sample_rate)
        spectrum *= np.maximum(freqs, 20.0) ** -rng.uniform(0.0, 1.0)
        wave = np.fft.irfft(spectrum, num_samples) * _envelope(num_samples, sample_rate, fade=0.05)
    elif sound == "tones":  # a random melody of 4-7 notes on a pentatonic scale, 250-900 Hz
        scale = 261.63 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21]) / 12)
        bounds = np.sort(rng.uniform(0.1, duration - 0.1, int(rng.integers(3, 7))))
        edges = np.concatenate([[0.0], bounds, [duration]])
        for a_time, b_time in zip(edges[:-1], edges[1:]):
            freq = scale[rng.integers(len(scale))]
            a, b = int(a_time * sample_rate), int(b_time * sample_rate)
            note = np.sin(2 * np.pi * freq * t[a:b]) + 0.3 * np.sin(4 * np.pi * freq * t[a:b])
            decay = np.exp(-(t[a:b] - a_time) / rng.uniform(0.2, 0.6))
            wave[a:b] = note * decay * _envelope(b - a, sample_rate)
    else:
        raise ValueError(f"unknown sound {sound!r}; expected one of {SOUND_EVENTS + NOISE_SOUNDS}")
    # equal loudness across classes (RMS 0.15) so level is no cue, but never above 0.9 peak (no clipping in AAC)
    rms, peak = np.sqrt(np.mean(wave**2)), np.abs(wave).max()
    return (wave * min(TARGET_RMS / rms, 0.9 / peak)).astype(np.float32)


def write_clip(
    path: str, frames: np.ndarray, audio: Optional[np.ndarray], settings: SyntheticSettings = SyntheticSettings()
) -> None:
    """Encode `frames` `[T, H, W, 3]` (and a mono waveform, if given) into an `.mp4` with PyAV."""
    import av

    codec = settings.video_codec if settings.video_codec in av.codecs_available else "mpeg4"
    with av.open(path, "w", format="mp4") as container:
        video_stream = container.add_stream(codec, rate=settings.fps)
        video_stream.width, video_stream.height = frames.shape[2], frames.shape[1]
        video_stream.pix_fmt = "yuv420p"
        # one thread: x264's output depends on its thread count, and byte-identical files need a fixed one
        video_stream.thread_count = 1
        if codec == "libx264":
            video_stream.options = {"preset": "ultrafast", "crf": "18"}
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=settings.sample_rate)
            audio_stream.layout = "mono"
            audio_stream.bit_rate = settings.audio_bitrate
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = index
            container.mux(video_stream.encode(frame))
        container.mux(video_stream.encode(None))
        if audio_stream is not None:
            chunk = 1024  # AAC frame size
            for start in range(0, len(audio), chunk):
                frame = av.AudioFrame.from_ndarray(audio[None, start : start + chunk], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = settings.sample_rate, start
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))


def render_media(
    clip: ClipSpec, split: str, seed: int, settings: SyntheticSettings = SyntheticSettings()
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Frames and waveform (`None` without a track) of one planned clip, before encoding; its random draws depend
    only on `(seed, split, clip.index)`."""
    rng = np.random.default_rng([seed, SPLITS.index(split), clip.index])
    frames = render_frames(clip, rng, settings)
    audio = render_sound(clip.sound, rng, settings.duration, settings.sample_rate) if clip.has_audio else None
    return frames, audio


def render_clip(
    path: str, clip: ClipSpec, split: str, seed: int, settings: SyntheticSettings = SyntheticSettings()
) -> None:
    """Render and write one planned clip (see [`render_media`])."""
    write_clip(path, *render_media(clip, split, seed, settings), settings)


def _clip_name_pattern() -> re.Pattern:
    return re.compile(rf"({'|'.join(SPLITS)})_\d{{4}}\.mp4")


def _claim_out_dir(out_dir: str) -> None:
    """Make `out_dir` this generator's marked folder, or refuse it before anything is written: only a new or empty
    folder, or one this generator marked, is used, because a new set deletes the files an earlier one left there."""
    if is_owned(out_dir, FOLDER_KIND):
        return
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise FolderOwnershipError(f"refusing to write the synthetic benchmark into {out_dir}: it exists and is not a "
                                   "folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        marker = read_marker(out_dir)
        what = f"a {marker['kind']} folder" if marker else "a folder this package did not create"
        raise FolderOwnershipError(f"refusing to write the synthetic benchmark into {out_dir}: it is {what} and not "
                                   "empty; choose a new or empty folder")
    os.makedirs(out_dir, exist_ok=True)
    write_marker(out_dir, FOLDER_KIND, FORMAT_VERSION)


def _remove_previous_set(out_dir: str, keep: set[str]) -> None:
    """Delete what an earlier, different set left in `out_dir` (only files this generator names, and only in a
    folder it marked as its own), so that a smaller set written over a larger one does not keep its extra splits or
    clips."""
    if not is_owned(out_dir, FOLDER_KIND):
        raise FolderOwnershipError(f"refusing to delete files in {out_dir}: it is not a {FOLDER_KIND} folder")
    for name in [INFO_FILE] + [f"{split}.jsonl" for split in SPLITS]:
        if os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    pattern = _clip_name_pattern()
    for name in os.listdir(os.path.join(out_dir, "videos")):
        if pattern.fullmatch(name) and name not in keep:
            os.remove(os.path.join(out_dir, "videos", name))


def generate_synthetic_benchmark(
    out_dir: str,
    seed: int = 0,
    preset: str = "default",
    sizes: Optional[dict[str, int]] = None,
    settings: SyntheticSettings = SyntheticSettings(),
    overwrite: bool = False,
    num_proc: Optional[int] = None,
) -> str:
    """Write the synthetic benchmark into `out_dir` and return `out_dir`.

    Layout: `videos/{split}_{index:04d}.mp4`, one `{split}.jsonl` per split (rows of `ClipSpec`, `video`
    relative to `out_dir`) and `synthetic_info.json` (the arguments). If `out_dir` already holds a complete set
    made with the same arguments, nothing is rewritten unless `overwrite=True`; a different earlier set is
    replaced (its split files and clips are removed). `out_dir` is marked as this generator's folder
    (`modeling_avigate.folders`); a folder that is not empty and not such a set is refused with
    `FolderOwnershipError` before anything is written, so no file of the user's is ever replaced or deleted.

    Args:
        out_dir: destination folder (created), new, empty, or a set written here before.
        seed: the same seed and sizes give the same files and captions.
        preset: `"default"` (600/120/168 clips) or `"quick"` (152/32/32, for CI).
        sizes: clips per split, overriding the preset, e.g. `{"train": 200, "validation": 40, "test": 40}`.
        settings: frame size, fps, duration, sample rate, codecs.
        overwrite: regenerate even if a matching set exists.
        num_proc: worker processes (default: all cores, at most 4). Each clip's content depends only on its own
            seed, so the files are the same for any `num_proc`.

    Example:

    ```python
    >>> import tempfile
    >>> from modeling_avigate.data import generate_synthetic_benchmark, load_benchmark
    >>> root = generate_synthetic_benchmark(tempfile.mkdtemp(), sizes={"train": 8, "validation": 6, "test": 6})
    >>> load_benchmark("synthetic", root, "test").num_rows
    6
    ```
    """
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset!r}")
    sizes = dict(PRESETS[preset] if sizes is None else sizes)
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"`sizes` has unknown splits {sorted(unknown)}; expected keys from {SPLITS}")
    info = {"format_version": FORMAT_VERSION, "seed": seed, "sizes": sizes, "settings": asdict(settings)}
    plans = {split: plan_split(split, num_clips, seed) for split, num_clips in sizes.items()}

    _claim_out_dir(out_dir)
    info_path = os.path.join(out_dir, INFO_FILE)
    if not overwrite and os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as handle:
            existing = json.load(handle)
        complete = all(os.path.isfile(os.path.join(out_dir, c.video)) for plan in plans.values() for c in plan)
        if existing == info and complete:
            logger.info("synthetic benchmark in %s is up to date", out_dir)
            return out_dir

    start = time.perf_counter()
    os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
    _remove_previous_set(out_dir, {os.path.basename(clip.video) for plan in plans.values() for clip in plan})
    jobs = [
        (os.path.join(out_dir, clip.video), clip, split, seed, settings)
        for split, plan in plans.items()
        for clip in plan
    ]
    num_proc = min(os.cpu_count() or 1, 4) if num_proc is None else num_proc
    # fork (not spawn): workers need no re-import of torch/transformers, which costs more than the clips themselves
    if num_proc > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(render_clip, *zip(*jobs), chunksize=16))
    else:
        for job in jobs:
            render_clip(*job)
    for split, plan in plans.items():
        with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as handle:
            for clip in plan:
                row = asdict(clip)
                del row["index"]
                handle.write(json.dumps(row) + "\n")
    # written last: its presence marks a complete set
    with open(info_path, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    logger.info("wrote %d synthetic clips to %s in %.1f s", sum(sizes.values()), out_dir, time.perf_counter() - start)
    return out_dir


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m modeling_avigate.data OUT_DIR [--seed S] [--preset default|quick]`: write the synthetic benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m modeling_avigate.data", description="Write the synthetic audio-visual retrieval benchmark."
    )
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes (default: cores, at most 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        generate_synthetic_benchmark(
            args.out_dir, seed=args.seed, preset=args.preset, overwrite=args.overwrite, num_proc=args.num_proc
        )
    except FolderOwnershipError as error:
        raise SystemExit(f"{parser.prog}: error: {error}") from None

