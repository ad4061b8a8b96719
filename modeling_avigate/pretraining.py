"""Stage 1 of the synthetic recipe: pretrained CLIP and AST towers for the synthetic world, in transformers' formats.

The paper fine-tunes AVIGATE from `openai/clip-vit-base-patch32` and `MIT/ast-finetuned-audioset-10-10-0.4593`. The
synthetic benchmark gets towers trained the same way on its own world, on a `pretrain` split written by the
benchmark's generator with its own seed (so it shares no clip with the benchmark's train, validation or test split):

- a tiny [`~transformers.CLIPModel`] trained CLIP-style (symmetric InfoNCE, `CLIPModel(return_loss=True)`) on single
  frames against captions naming only what is visible: colour, shape, direction, background and, when it is on
  screen, the loudspeaker ("... beside a loudspeaker"). No caption names a sound.
- a tiny [`~transformers.ASTForAudioClassification`] trained AudioSet-style (one sigmoid per label, binary
  cross-entropy) on each track's label: each sound event, each noise type, and silence (a silent clip's fbank is
  that of an all-zero track).

Both are saved with `save_pretrained` beside their preprocessing configs (`CLIPProcessor`: the frame pipeline and the
tokenizer; the AST's `AvigateFeatureExtractor`, whose fbank they were trained on), so
`AvigateModel.from_clip_ast_pretrained(OUT/clip, OUT/ast)` loads them as it loads the Hub checkpoints.

    python -m modeling_avigate.pretraining OUT_DIR [--clips 960] [--seed 1]
"""

import argparse
import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    ASTConfig,
    ASTForAudioClassification,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    get_cosine_schedule_with_warmup,
)

from .data.synthetic import (
    AUDIO_INFORMATIVE,
    BACKGROUNDS,
    COLORS,
    DIRECTIONS,
    FORMAT_VERSION as BENCHMARK_FORMAT_VERSION,
    NOISE_SOUNDS,
    NO_SOUND,
    SHAPES,
    SOUND_EVENTS,
    SPEAKER_PHRASE,
    VISUAL_TEMPLATES,
    ClipSpec,
    plan_split,
    render_media,
    synthetic_tokenizer,
)
from .folders import FolderOwnershipError, atomic_folder, is_owned
from .embedding import EmbeddingOptions, video_batches
from .processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor


logger = logging.getLogger(__name__)

PRETRAIN_SPLIT = "pretrain"
SILENCE = "silence"
AUDIO_LABELS = (*SOUND_EVENTS, *NOISE_SOUNDS, SILENCE)
VISUAL_ATTRIBUTES = ("color", "shape", "direction", "background")
FOLDER_KIND = "pretrained_towers"
# Raised whenever the same settings would train different towers, so a cached stage 1 is retrained, not reused.
FORMAT_VERSION = 1
CLIP_FOLDER, AST_FOLDER = "clip", "ast"
INFO_FILE = "pretraining.json"


@dataclass(frozen=True)
class PretrainingSettings:
    """Everything stage 1's towers depend on (with the generator's format version): the cache key of a stage-1
    folder."""

    num_clips: int = 960
    seed: int = 1  # the benchmark's splits use seed 0
    image_size: int = 32
    num_frames: int = 4
    max_length: int = 16
    hidden_size: int = 64
    intermediate_size: int = 256  # 4 × hidden, as in CLIP and AST: AVIGATE copies CLIP text layers only of that shape
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    patch_size: int = 16
    projection_dim: int = 64
    audio_patch_size: int = 32
    clip_epochs: int = 40
    ast_epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_proportion: float = 0.1
    training_seed: int = 0


# -- captions and labels ------------------------------------------------------------------------------------------


def visible_caption(clip: ClipSpec, template: int = 0) -> str:
    """A caption naming only what a frame of `clip` shows; the loudspeaker is named when it is on screen.

    Example:

    ```python
    >>> from modeling_avigate.data.synthetic import plan_split
    >>> from modeling_avigate.pretraining import visible_caption
    >>> clip = next(c for c in plan_split("pretrain", 12, seed=1) if c.kind == "audio_informative")
    >>> visible_caption(clip).endswith("beside a loudspeaker"), clip.sound in visible_caption(clip)
    (True, False)
    ```
    """
    text = VISUAL_TEMPLATES[template].format(**{name: getattr(clip, name) for name in VISUAL_ATTRIBUTES})
    return f"{text} {SPEAKER_PHRASE}" if clip.kind == AUDIO_INFORMATIVE else text


def audio_label(clip: ClipSpec) -> int:
    """Index in `AUDIO_LABELS` of the clip's track: its sound event or noise type, or silence without a track."""
    return AUDIO_LABELS.index(SILENCE if clip.sound == NO_SOUND else clip.sound)


# -- the towers and their preprocessing ---------------------------------------------------------------------------


def build_processor(settings: PretrainingSettings, tokenizer: CLIPTokenizer) -> AvigateProcessor:
    """The frame pipeline, fbank and tokenizer (its captions cut at `settings.max_length` tokens) that stage 1 trains
    on and stage 2 feeds the towers with."""
    tokenizer.model_max_length = settings.max_length
    video_processor = AvigateVideoProcessor(size=settings.image_size, crop_size=settings.image_size,
                                            num_frames=settings.num_frames)
    return AvigateProcessor(AvigateFeatureExtractor(), video_processor, tokenizer)


def clip_image_processor(settings: PretrainingSettings) -> CLIPImageProcessorPil:
    """The CLIP checkpoint's image processor: the frame geometry of [`build_processor`] for single images."""
    size = settings.image_size
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tower_kwargs(settings: PretrainingSettings) -> dict:
    return {"hidden_size": settings.hidden_size, "intermediate_size": settings.intermediate_size,
            "num_hidden_layers": settings.num_hidden_layers, "num_attention_heads": settings.num_attention_heads}


def clip_config(settings: PretrainingSettings, tokenizer: CLIPTokenizer) -> CLIPConfig:
    text_config = {**tower_kwargs(settings), "vocab_size": len(tokenizer), "max_position_embeddings": 32,
                   "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "pad_token_id": tokenizer.pad_token_id}
    vision_config = {**tower_kwargs(settings), "image_size": settings.image_size, "patch_size": settings.patch_size}
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=settings.projection_dim)


def ast_config(settings: PretrainingSettings, feature_extractor: AvigateFeatureExtractor) -> ASTConfig:
    size = settings.audio_patch_size
    return ASTConfig(
        **tower_kwargs(settings), patch_size=size, frequency_stride=size, time_stride=size,
        max_length=feature_extractor.max_length, num_mel_bins=feature_extractor.num_mel_bins,
        num_labels=len(AUDIO_LABELS), id2label=dict(enumerate(AUDIO_LABELS)),
        label2id={label: index for index, label in enumerate(AUDIO_LABELS)},
        problem_type="multi_label_classification",
    )


# -- decoded clips ------------------------------------------------------------------------------------------------


@dataclass
class DecodedClips:
    """Model inputs of a list of clips: frames `[N, T, 3, H, W]` and fbanks `[N, 1024, 128]` (fp16 to halve the
    memory; a clip without a track gets the fbank of an all-zero track, the `silence` label's input)."""

    clips: list[ClipSpec]
    pixel_values: torch.Tensor
    input_values: torch.Tensor


def silence_features(feature_extractor: AvigateFeatureExtractor, num_samples: int = 32000) -> torch.Tensor:
    """The fbank of an all-zero track, `[1024, 128]`."""
    silent = np.zeros(num_samples, dtype=np.float32)
    return torch.from_numpy(feature_extractor(silent, sampling_rate=feature_extractor.sampling_rate,
                                              return_tensors="np")["input_values"][0])


def decode_clips(processor: AvigateProcessor, data_dir: str, clips: list[ClipSpec], desc: str) -> DecodedClips:
    """Decode the clips' files under `data_dir` with the processor (every file must be usable)."""
    paths = [os.path.join(data_dir, clip.video) for clip in clips]
    silence = silence_features(processor.feature_extractor).half()
    pixel_values, input_values = [], []
    for batch in video_batches(processor, paths, EmbeddingOptions(batch_size=32, strict=True), desc=desc):
        pixel_values.append(batch.inputs["pixel_values"].half())
        fbank = batch.inputs["input_values"].half()
        fbank[~batch.inputs["has_audio"].bool()] = silence
        input_values.append(fbank)
    return DecodedClips(clips, torch.cat(pixel_values), torch.cat(input_values))


def _render_inputs(settings: PretrainingSettings, clips: list[ClipSpec]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and fbanks (fp16) of pretraining clips rendered by the generator, through stage 1's processor."""
    processor = build_processor(settings, synthetic_tokenizer())
    silence = silence_features(processor.feature_extractor)
    pixel_values, input_values = [], []
    for clip in clips:
        frames, audio = render_media(clip, PRETRAIN_SPLIT, settings.seed)
        inputs = processor.process_video(frames, audio, processor.feature_extractor.sampling_rate
                                         if audio is not None else None)
        pixel_values.append(torch.from_numpy(inputs["pixel_values"]))
        input_values.append(torch.from_numpy(inputs["input_values"]) if audio is not None else silence)
    return torch.stack(pixel_values).half(), torch.stack(input_values).half()


def render_pretraining_clips(settings: PretrainingSettings, num_proc: int | None = None) -> DecodedClips:
    """The `pretrain` split (its own seed and split name, so no clip of the benchmark's splits), rendered by the
    benchmark's generator and fed through the processor as frame and sound arrays: the same pixels and samples as
    its `.mp4` files would hold before encoding, without the encode-decode round trip (two thirds of the time)."""
    clips = plan_split(PRETRAIN_SPLIT, settings.num_clips, settings.seed)
    num_proc = min(os.cpu_count() or 1, 4) if num_proc is None else num_proc
    chunks = [clips[start::num_proc] for start in range(num_proc)]
    if num_proc > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_render_inputs, [settings] * num_proc, chunks))
    else:
        parts = [_render_inputs(settings, chunk) for chunk in chunks]
    ordered = [clip for chunk in chunks for clip in chunk]
    return DecodedClips(ordered, torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts]))


def read_clips(data_dir: str, split: str) -> list[ClipSpec]:
    """The `ClipSpec`s of a split the generator wrote into `data_dir` (its `{split}.jsonl`, in file order)."""
    with open(os.path.join(data_dir, f"{split}.jsonl"), encoding="utf-8") as handle:
        return [ClipSpec(**json.loads(line), index=index) for index, line in enumerate(handle)]


# -- training -----------------------------------------------------------------------------------------------------


def _optimizer(model: torch.nn.Module, settings: PretrainingSettings, steps: int):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.learning_rate)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(settings.warmup_proportion * steps), steps)
    return optimizer, scheduler


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler) -> float:
    """One optimiser step on `loss`; returns its value."""
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


def train_clip(settings: PretrainingSettings, data: DecodedClips, tokenizer: CLIPTokenizer) -> tuple[CLIPModel, list]:
    """CLIP-style training: each epoch pairs one random frame of every clip with one of its visible captions (a
    random template), in batches where no clip appears twice. Returns the model and the mean loss of each epoch."""
    generator = torch.Generator().manual_seed(settings.training_seed)
    torch.manual_seed(settings.training_seed)
    model = CLIPModel(clip_config(settings, tokenizer)).train()
    captions = [[visible_caption(clip, template) for template in range(len(VISUAL_TEMPLATES))] for clip in data.clips]
    tokens = [tokenizer(texts, padding="max_length", max_length=settings.max_length, return_tensors="pt")
              for texts in zip(*captions)]  # per template: [N, L]
    num_clips, num_frames = data.pixel_values.shape[:2]
    steps_per_epoch = num_clips // settings.batch_size
    optimizer, scheduler = _optimizer(model, settings, settings.clip_epochs * steps_per_epoch)
    history = []
    for _ in tqdm(range(settings.clip_epochs), desc="stage 1: CLIP", unit="epoch", leave=False):
        order = torch.randperm(num_clips, generator=generator)
        frames = torch.randint(num_frames, (num_clips,), generator=generator)
        templates = torch.randint(len(VISUAL_TEMPLATES), (num_clips,), generator=generator)
        losses = []
        for step in range(steps_per_epoch):
            rows = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            input_ids = torch.stack([tokens[templates[row]]["input_ids"][row] for row in rows])
            attention_mask = torch.stack([tokens[templates[row]]["attention_mask"][row] for row in rows])
            outputs = model(input_ids=input_ids, attention_mask=attention_mask,
                            pixel_values=data.pixel_values[rows, frames[rows]].float(), return_loss=True)
            losses.append(_step(outputs.loss, optimizer, scheduler))
        history.append(float(np.mean(losses)))
    return model.eval(), history


def train_ast(settings: PretrainingSettings, data: DecodedClips,
              feature_extractor: AvigateFeatureExtractor) -> tuple[ASTForAudioClassification, list]:
    """AudioSet-style training: one sigmoid per label (binary cross-entropy), every track once per epoch. Returns the
    model and the mean loss of each epoch."""
    generator = torch.Generator().manual_seed(settings.training_seed)
    torch.manual_seed(settings.training_seed)
    model = ASTForAudioClassification(ast_config(settings, feature_extractor)).train()
    labels = torch.nn.functional.one_hot(torch.tensor([audio_label(clip) for clip in data.clips]),
                                         len(AUDIO_LABELS)).float()
    num_clips = len(data.clips)
    steps_per_epoch = num_clips // settings.batch_size
    optimizer, scheduler = _optimizer(model, settings, settings.ast_epochs * steps_per_epoch)
    history = []
    for _ in tqdm(range(settings.ast_epochs), desc="stage 1: AST", unit="epoch", leave=False):
        order = torch.randperm(num_clips, generator=generator)
        losses = []
        for step in range(steps_per_epoch):
            rows = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            outputs = model(input_values=data.input_values[rows].float(), labels=labels[rows])
            losses.append(_step(outputs.loss, optimizer, scheduler))
        history.append(float(np.mean(losses)))
    return model.eval(), history


# -- quality of each tower ----------------------------------------------------------------------------------------


@torch.no_grad()
def clip_zero_shot_accuracy(clip: CLIPModel, tokenizer: CLIPTokenizer, data: DecodedClips,
                            max_length: int = 16) -> dict[str, float]:
    """Zero-shot classification of every frame among the visible captions of all 288 looks (shape × colour ×
    direction × background × loudspeaker or not, the first template); % of frames whose predicted look is right on
    each attribute, and on all of them (`all`)."""
    looks = [dict(zip(VISUAL_ATTRIBUTES, values), speaker=speaker) for values, speaker in
             itertools.product(itertools.product(COLORS, SHAPES, DIRECTIONS, BACKGROUNDS), (False, True))]
    texts = [VISUAL_TEMPLATES[0].format(**look) + (f" {SPEAKER_PHRASE}" if look["speaker"] else "") for look in looks]
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, return_tensors="pt")
    text_embeds = clip.get_text_features(**tokens).pooler_output
    image_embeds = clip.get_image_features(pixel_values=data.pixel_values.flatten(0, 1).float()).pooler_output
    # The argmax of cosine similarity: only the image side's norm could change it, and it is the same for all texts.
    predicted = (image_embeds @ torch.nn.functional.normalize(text_embeds, dim=-1).T).argmax(dim=1)
    num_frames = data.pixel_values.shape[1]
    truth = [dict(**{name: getattr(clip_spec, name) for name in VISUAL_ATTRIBUTES},
                  speaker=clip_spec.kind == AUDIO_INFORMATIVE) for clip_spec in data.clips for _ in range(num_frames)]
    result = {}
    for attribute in (*VISUAL_ATTRIBUTES, "speaker"):
        result[attribute] = 100 * float(np.mean([looks[p][attribute] == t[attribute]
                                                 for p, t in zip(predicted.tolist(), truth)]))
    result["all"] = 100 * float(np.mean([looks[p] == t for p, t in zip(predicted.tolist(), truth)]))
    return result


@torch.no_grad()
def ast_accuracy(ast: ASTForAudioClassification, data: DecodedClips, batch_size: int = 64) -> dict[str, float]:
    """% of tracks whose highest-scoring label is their own, per label and over all tracks (`all`)."""
    logits = torch.cat([ast(input_values=data.input_values[start : start + batch_size].float()).logits
                        for start in range(0, len(data.clips), batch_size)])
    right = logits.argmax(dim=1).numpy() == np.array([audio_label(clip) for clip in data.clips])
    labels = np.array([AUDIO_LABELS[audio_label(clip)] for clip in data.clips])
    result = {label: 100 * float(right[labels == label].mean()) for label in AUDIO_LABELS if (labels == label).any()}
    result["all"] = 100 * float(right.mean())
    return result


@torch.no_grad()
def clip_video_similarity(clip: CLIPModel, tokenizer: CLIPTokenizer, captions: list[str], pixel_values: torch.Tensor,
                          video_mask: torch.Tensor, max_length: int = 16) -> torch.Tensor:
    """Zero-shot text→video cosine similarities `[len(captions), Nv]` of CLIP alone: each video is the mean of its
    frames' image embeddings (`video_mask` marks real frames), with no fine-tuning and no sound."""
    tokens = tokenizer(captions, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    text = torch.nn.functional.normalize(clip.get_text_features(**tokens).pooler_output, dim=-1)
    frames = clip.get_image_features(pixel_values=pixel_values.flatten(0, 1).float()).pooler_output
    frames = torch.nn.functional.normalize(frames, dim=-1).unflatten(0, pixel_values.shape[:2])
    mask = video_mask.float().unsqueeze(-1)
    videos = torch.nn.functional.normalize((frames * mask).sum(dim=1) / mask.sum(dim=1), dim=-1)
    return text @ videos.T


# -- the stage-1 folder -------------------------------------------------------------------------------------------


def stage_one_key(settings: PretrainingSettings) -> dict:
    """What decides a stage-1 folder's towers: reused only when a folder's recorded key equals this one."""
    return {"format_version": FORMAT_VERSION, "benchmark_format_version": BENCHMARK_FORMAT_VERSION,
            "settings": dataclasses.asdict(settings)}


def read_stage_one(out_dir: str) -> dict | None:
    """The record of a complete stage-1 folder this package wrote at `out_dir`, or `None`."""
    if not is_owned(out_dir, FOLDER_KIND):
        return None
    try:
        with open(os.path.join(out_dir, INFO_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def pretrain_towers(out_dir: str, settings: PretrainingSettings = PretrainingSettings(), num_proc: int | None = None,
                    ) -> dict:
    """Write stage 1 into `out_dir` and return its record (`pretraining.json`): `clip/` (`CLIPModel` + `CLIPProcessor`), `ast/` (`ASTForAudioClassification` + its feature extractor).

    A folder written here before with the same settings is reused as it is. Any other `out_dir` is replaced only
    when it is absent, empty, or a stage-1 folder of this package (its marker), and atomically: an interrupted run
    leaves the previous folder loadable. Example: `pretrain_towers("outputs/pretrained")`, then
    `AvigateModel.from_clip_ast_pretrained("outputs/pretrained/clip", "outputs/pretrained/ast")`.
    """
    key = stage_one_key(settings)
    record = read_stage_one(out_dir)
    if record is not None and {name: record.get(name) for name in key} == key:
        logger.info("stage 1 in %s is up to date", out_dir)
        return record
    started = time.time()
    tokenizer = synthetic_tokenizer()
    processor = build_processor(settings, tokenizer)
    with atomic_folder(out_dir, FOLDER_KIND, FORMAT_VERSION) as staging:
        data = render_pretraining_clips(settings, num_proc)
        decoded = time.time()
        clip, clip_history = train_clip(settings, data, tokenizer)
        clip.save_pretrained(os.path.join(staging, CLIP_FOLDER))
        CLIPProcessor(image_processor=clip_image_processor(settings), tokenizer=tokenizer).save_pretrained(
            os.path.join(staging, CLIP_FOLDER))
        clip_trained = time.time()
        ast, ast_history = train_ast(settings, data, processor.feature_extractor)
        ast.save_pretrained(os.path.join(staging, AST_FOLDER))
        processor.feature_extractor.save_pretrained(os.path.join(staging, AST_FOLDER))
        record = {**key, "pretraining_split": {"name": PRETRAIN_SPLIT, "seed": settings.seed,
                                               "clips": settings.num_clips},
                  "clip_loss_per_epoch": clip_history, "ast_loss_per_epoch": ast_history,
                  "seconds": {"data": round(decoded - started, 1), "clip": round(clip_trained - decoded, 1),
                              "ast": round(time.time() - clip_trained, 1)}}
        with open(os.path.join(staging, INFO_FILE), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
    return record


def tower_quality(stage_one_dir: str, benchmark_dir: str, split: str = "test") -> dict:
    """Each tower's own quality on a benchmark split: CLIP's zero-shot attribute accuracy on its frames and the AST's
    accuracy per label on its tracks (see [`clip_zero_shot_accuracy`], [`ast_accuracy`])."""
    clip_dir = os.path.join(stage_one_dir, CLIP_FOLDER)
    tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
    settings = PretrainingSettings(**read_stage_one(stage_one_dir)["settings"])
    processor = build_processor(settings, tokenizer)
    data = decode_clips(processor, benchmark_dir, read_clips(benchmark_dir, split), desc=f"decoding the {split} split")
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    ast = ASTForAudioClassification.from_pretrained(os.path.join(stage_one_dir, AST_FOLDER)).eval()
    return {"clip_zero_shot": clip_zero_shot_accuracy(clip, tokenizer, data, settings.max_length),
            "ast": ast_accuracy(ast, data)}


def main(argv: list[str] | None = None) -> None:
    """`python -m modeling_avigate.pretraining OUT_DIR [--clips N] [--seed S] [--benchmark DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m modeling_avigate.pretraining",
                                     description="Pretrain the synthetic world's CLIP and AST towers (stage 1).")
    parser.add_argument("out_dir")
    parser.add_argument("--clips", type=int, default=PretrainingSettings.num_clips, help="pretraining clips")
    parser.add_argument("--seed", type=int, default=PretrainingSettings.seed, help="the pretraining split's seed")
    parser.add_argument("--benchmark", help="a synthetic benchmark folder: report each tower's quality on its test "
                                            "split")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        record = pretrain_towers(args.out_dir, PretrainingSettings(num_clips=args.clips, seed=args.seed))
    except FolderOwnershipError as error:
        raise SystemExit(f"{parser.prog}: error: {error}") from None
    print(json.dumps(record["seconds"]))
    if args.benchmark:
        print(json.dumps(tower_quality(args.out_dir, args.benchmark), indent=2))


if __name__ == "__main__":
    main()
