#!/usr/bin/env python
"""Train and evaluate AVIGATE with Accelerate.

    accelerate launch examples/train.py --config examples/configs/synthetic.yaml [--key value ...]
    python examples/train.py --config examples/configs/synthetic.yaml --epochs 1       # one process

The YAML file holds the training arguments (the fields of `TrainArguments`) plus two optional sections: `model`
(keyword arguments of `AvigateConfig` for a randomly initialised model) and `processor` (keyword arguments of
`AvigateProcessor.from_settings`). Command-line `--key value` pairs override the YAML's top-level keys; `--model.key
value` and `--processor.key value` override those sections.

Every epoch writes `output_dir/checkpoint-epoch-N` (model + processor, loadable by `AvigateModel.from_pretrained`, and
the Accelerate state) atomically; `--resume_from_checkpoint latest` continues a run exactly. The best epoch by the
selection split's text→video R@1 is copied to `output_dir/best`, and `output_dir/metrics.json` holds its final
evaluation in the format `modeling_avigate.hub` turns into a model card. With `--cache_only true` the script builds
the `--frame_cache` / `--audio_cache` folders it was given and exits.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass, field

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import CLIPImageProcessorPil, CLIPTokenizer, get_cosine_schedule_with_warmup

from modeling_avigate import AvigateConfig, AvigateModel, AvigateProcessor
from modeling_avigate.data import load_benchmark
from modeling_avigate.data.synthetic import synthetic_tokenizer
from modeling_avigate.processors import AvigateFeatureExtractor
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.hub.model_card import TRAIN_ARGS_FILE, write_model_card
from modeling_avigate.training import (
    LearningRates,
    NonFiniteLossError,
    latest_checkpoint,
    build_parameter_groups,
    contrastive_loss_from_outputs,
    freeze_for_training,
    replace_directory_atomically,
)
from modeling_avigate.training_data import PairDataset, collate_pairs, prepare_feature_caches


logger = logging.getLogger("avigate.train")

CARD_RECORD_KEYS = ("dataset", "split", "selected_on", "text_to_video", "video_to_text", "test_time_renormalization")


@dataclass
class TrainArguments:
    benchmark: str = "synthetic"
    data_dir: str = "outputs/synthetic_data"
    train_split: str = "train"
    selection_split: str | None = "val"
    test_split: str = "test"
    output_dir: str = "outputs/avigate"
    model_name_or_path: str | None = None
    clip_name_or_path: str | None = None
    ast_name_or_path: str | None = None
    gate_mode: str | None = None
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-4
    clip_lr_multiplier: float = 1e-3
    query_lr_multiplier: float = 100.0
    weight_decay: float = 0.2
    warmup_proportion: float = 0.1
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"
    freeze_clip_embeddings: bool = True
    train_audio_encoder: bool = False
    audio_cache: str | None = None
    frame_cache: str | None = None
    cache_only: bool = False
    num_workers: int = 0
    seed: int = 42
    max_train_steps: int | None = None
    stop_after_epochs: int | None = None
    eval_batch_size: int = 64
    strict: bool = False
    report_to: str | None = "tensorboard"
    resume_from_checkpoint: str | None = None
    benchmark_kwargs: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    processor: dict = field(default_factory=dict)


def parse_value(text: str):
    """Command-line values are read as YAML scalars: `--epochs 3`, `--strict true` and `--x null` do what they say."""
    return yaml.safe_load(text)


def parse_arguments(argv: list[str] | None = None) -> TrainArguments:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with TrainArguments fields and `model` / `processor` sections")
    known, rest = parser.parse_known_args(argv)
    values: dict = {}
    if known.config:
        with open(known.config) as handle:
            values = yaml.safe_load(handle) or {}
    names = {f.name for f in dataclasses.fields(TrainArguments)}
    unknown = set(values) - names
    if unknown:
        raise SystemExit(f"{known.config}: unknown keys {sorted(unknown)}")
    if len(rest) % 2:
        raise SystemExit(f"overrides must be `--key value` pairs, got {rest}")
    for flag, text in zip(rest[::2], rest[1::2]):
        if not flag.startswith("--"):
            raise SystemExit(f"expected an option name, got {flag!r}")
        key = flag[2:]
        section, _, sub_key = key.partition(".")
        if sub_key and section in ("model", "processor", "benchmark_kwargs"):
            values.setdefault(section, {})[sub_key] = parse_value(text)
        elif key in names:
            values[key] = parse_value(text)
        else:
            raise SystemExit(f"unknown option --{key}; valid: {sorted(names)}")
    return TrainArguments(**values)


# -- model and processor ------------------------------------------------------------------------------------------


def build_model(args: TrainArguments, processor: AvigateProcessor) -> AvigateModel:
    overrides = dict(args.model)
    if args.gate_mode is not None:
        overrides["gate_mode"] = args.gate_mode
    if args.model_name_or_path:
        return AvigateModel.from_pretrained(args.model_name_or_path, **overrides)
    if args.clip_name_or_path and args.ast_name_or_path:
        return AvigateModel.from_clip_ast_pretrained(args.clip_name_or_path, args.ast_name_or_path, **overrides)
    # A randomly initialised text tower takes its vocabulary and special tokens from the processor's tokenizer.
    tokenizer = processor.tokenizer
    overrides["text_config"] = {
        **overrides.get("text_config", {}), "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
    }
    return AvigateModel(AvigateConfig(**overrides))


def processor_from_settings(
    tokenizer: str = "openai/clip-vit-base-patch32", image_size: int = 224, **processor_kwargs
) -> AvigateProcessor:
    """A processor for a randomly initialised model: CLIP's frame pipeline at `image_size`, AVIGATE's fbank, and the
    tokenizer `tokenizer` (a path or Hub id, or `"synthetic"` for the synthetic benchmark's vocabulary)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    text_tokenizer = synthetic_tokenizer() if tokenizer == "synthetic" else CLIPTokenizer.from_pretrained(tokenizer)
    return AvigateProcessor(image_processor, AvigateFeatureExtractor(), text_tokenizer, **processor_kwargs)


def build_processor(args: TrainArguments) -> AvigateProcessor:
    if args.model_name_or_path and os.path.isfile(os.path.join(args.model_name_or_path, "processor_config.json")):
        return AvigateProcessor.from_pretrained(args.model_name_or_path)
    return processor_from_settings(**args.processor)


# -- checkpoints --------------------------------------------------------------------------------------------------


def save_checkpoint(accelerator: Accelerator, model, processor, directory: str, state: dict) -> None:
    """Model + processor + Accelerate state + trainer state, written to a staging folder and renamed into place."""
    staging = directory + ".partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(os.path.join(staging, "accelerate_state"))
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(staging)
        processor.save_pretrained(staging)
        with open(os.path.join(staging, "trainer_state.json"), "w") as handle:
            json.dump(state, handle, indent=2)
        replace_directory_atomically(staging, directory)
    accelerator.wait_for_everyone()


def copy_best(directory: str, best_dir: str) -> None:
    staging = best_dir + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(directory, staging, ignore=shutil.ignore_patterns("accelerate_state"))
    replace_directory_atomically(staging, best_dir)


# -- training -----------------------------------------------------------------------------------------------------


def evaluate_split(args, accelerator, model, processor, split: str, caches) -> dict:
    videos = load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
    return evaluate_retrieval(
        accelerator.unwrap_model(model), processor, videos, batch_size=args.eval_batch_size,
        num_workers=args.num_workers, frame_cache=caches.get("frames"), audio_cache=caches.get("audio"),
        device=accelerator.device,
    )


def open_caches(args, accelerator, model, processor, video_views) -> dict:
    """The main process builds whatever cache is missing; the others open the result."""
    kwargs = dict(frame_cache=args.frame_cache, audio_cache=args.audio_cache, batch_size=args.eval_batch_size,
                  num_workers=args.num_workers, device=accelerator.device, strict=args.strict)
    if accelerator.is_main_process:
        caches = prepare_feature_caches(model, processor, video_views, **kwargs)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        caches = prepare_feature_caches(model, processor, video_views, open_only=True, **kwargs)
    return caches


def resolve_mixed_precision(requested: str) -> str:
    """`auto`: what `accelerate launch` was told, else bf16 autocast where the GPU supports it, else fp32."""
    if requested != "auto":
        return requested
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def train(args: TrainArguments) -> dict:
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    if args.batch_size % accelerator.num_processes:
        raise SystemExit(f"--batch_size {args.batch_size} must be divisible by {accelerator.num_processes} processes")
    per_process_batch = args.batch_size // accelerator.num_processes
    set_seed(args.seed)

    processor = build_processor(args)
    model = build_model(args, processor)
    freeze_for_training(model, args.train_audio_encoder, args.freeze_clip_embeddings)
    rates = LearningRates(args.learning_rate, args.clip_lr_multiplier, args.query_lr_multiplier, args.weight_decay)
    groups = build_parameter_groups(model, rates)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k not in ("names", "family")} for g in groups])

    pairs = load_benchmark(args.benchmark, args.data_dir, args.train_split, view="pairs", **args.benchmark_kwargs)
    all_videos = [load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
                  for split in {args.train_split, args.selection_split or args.test_split, args.test_split}]
    model.to(accelerator.device)
    if args.audio_cache and args.train_audio_encoder:
        raise SystemExit("--audio_cache stores the frozen AST's output: it cannot be used with --train_audio_encoder")
    caches = open_caches(args, accelerator, model, processor, all_videos)
    if args.cache_only:
        # Caches can be built ahead of time (on a CPU machine before a GPU job, or once before runs in parallel).
        accelerator.end_training()
        return {"caches": {kind: cache.directory for kind, cache in caches.items()}}
    dataset = PairDataset(pairs, processor, frame_cache=caches.get("frames"), audio_cache=caches.get("audio"),
                          strict=args.strict)
    loader = DataLoader(dataset, batch_size=per_process_batch, shuffle=True, drop_last=True,
                        num_workers=args.num_workers, collate_fn=collate_pairs(processor))
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or steps_per_epoch * args.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(args.warmup_proportion * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "train_args.json"), "w") as handle:
            json.dump(dataclasses.asdict(args), handle, indent=2)
    accelerator.init_trackers("avigate", config={k: v for k, v in dataclasses.asdict(args).items()
                                                  if isinstance(v, (int, float, str, bool))})
    logger.info(
        "%d pairs, contrastive batch %d (%d per process × %d processes; gradient accumulation %d sums gradients of "
        "separate contrastive batches), %d optimiser steps", len(dataset), args.batch_size, per_process_batch,
        accelerator.num_processes, args.gradient_accumulation_steps, total_steps,
    )

    state = {"epoch": -1, "global_step": 0, "best_metric": None, "best_epoch": None, "history": []}
    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = latest_checkpoint(args.output_dir)
    if resume:
        accelerator.load_state(os.path.join(resume, "accelerate_state"))
        with open(os.path.join(resume, "trainer_state.json")) as handle:
            state = json.load(handle)
        logger.info("resumed from %s (epoch %d done)", resume, state["epoch"])

    selection = args.selection_split or "last_epoch"
    first_epoch = state["epoch"] + 1
    for epoch in range(first_epoch, args.epochs):
        if state["global_step"] >= total_steps:
            break
        if args.stop_after_epochs is not None and epoch - first_epoch >= args.stop_after_epochs:
            logger.info("stopping after %d epochs as asked; continue with --resume_from_checkpoint latest",
                        args.stop_after_epochs)
            accelerator.end_training()
            return {"stopped_after_epoch": epoch}
        model.train()
        loader.set_epoch(epoch)
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not accelerator.is_main_process)
        for batch in progress:
            with accelerator.accumulate(model):
                outputs = model(**batch)
                loss = contrastive_loss_from_outputs(outputs, accelerator.unwrap_model(model).config)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss became {loss.item()} at step {state['global_step']} (epoch {epoch + 1}); the last good "
                        f"checkpoint is {latest_checkpoint(args.output_dir)}"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                state["global_step"] += 1
                logs = {"loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                        "attn_gate": outputs.attn_gates.mean().item(), "ffn_gate": outputs.ffn_gates.mean().item()}
                progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
                accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=state["global_step"])
                if state["global_step"] >= total_steps:
                    break
        state["epoch"] = epoch
        record = {"epoch": epoch + 1, "step": state["global_step"], "loss": loss.item()}
        if args.selection_split:
            metrics = evaluate_split(args, accelerator, model, processor, args.selection_split, caches)
            t2v = metrics["text_to_video"]
            accelerator.log({f"{args.selection_split}/t2v_{k}": v for k, v in t2v.items()}, step=state["global_step"])
            logger.info("epoch %d %s text→video %s", epoch + 1, args.selection_split, t2v)
            record.update({"split": args.selection_split, **{f"t2v_{k}": v for k, v in t2v.items()}})
            is_best = state["best_metric"] is None or t2v["R@1"] > state["best_metric"]
            if is_best:
                state["best_metric"] = t2v["R@1"]
        else:
            is_best = True  # no validation split: never select on the test split, keep the last epoch
        if is_best:
            state["best_epoch"] = epoch + 1
        state["history"].append(record)
        directory = os.path.join(args.output_dir, f"checkpoint-epoch-{epoch + 1}")
        save_checkpoint(accelerator, model, processor, directory, state)
        if is_best and accelerator.is_main_process:
            copy_best(directory, os.path.join(args.output_dir, "best"))
        accelerator.wait_for_everyone()

    best_dir = os.path.join(args.output_dir, "best")
    best_model = AvigateModel.from_pretrained(best_dir).to(accelerator.device)
    final = evaluate_split(args, accelerator, best_model, processor, args.test_split, caches)
    result = {
        "dataset": args.benchmark, "split": args.test_split, "selected_on": selection,
        "best_epoch": state["best_epoch"], **final,
    }
    if accelerator.is_main_process:
        with open(os.path.join(args.output_dir, "metrics.json"), "w") as handle:
            json.dump(result, handle, indent=2)
        # The record `modeling_avigate.hub` turns into the model card's model-index, kept beside the best model.
        card_record = {key: result[key] for key in CARD_RECORD_KEYS}
        with open(os.path.join(best_dir, "eval_results.json"), "w") as handle:
            json.dump(card_record, handle, indent=2)
        # The model card describes this run from its own arguments (initialisation, audio weights, recipe).
        with open(os.path.join(best_dir, TRAIN_ARGS_FILE), "w") as handle:
            json.dump(dataclasses.asdict(args), handle, indent=2)
        write_model_card(best_dir)
        logger.info("best epoch %d (selected on %s); %s text→video %s", state["best_epoch"], selection,
                    args.test_split, final["text_to_video"])
    accelerator.end_training()
    return result


def main(argv: list[str] | None = None) -> dict:
    return train(parse_arguments(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
