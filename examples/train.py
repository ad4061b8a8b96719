#!/usr/bin/env python
"""Train and evaluate AVIGATE with Accelerate.

    accelerate launch examples/train.py --config examples/configs/synthetic.yaml [--key value ...]
    python examples/train.py --config examples/configs/synthetic.yaml --epochs 1       # one process

The YAML file holds `TrainArguments` fields plus two optional sections, `model` (`AvigateConfig` arguments of a
random model) and `processor` (`processor_from_settings` arguments); `--key value` overrides a field (`null` clears
it), `--model.key value` a section's key (also `--processor.`, `--benchmark_kwargs.`, dotted nested keys).

Every `--eval_every_epochs` epochs and the last, the model is validated and saved atomically to
`output_dir/checkpoint-epoch-N` (`--save_total_limit` of them kept, the best one's always); the best by the selection
split's text→video R@1 is `output_dir/best`, and `output_dir/metrics.json` the test evaluation of exactly those
weights. This run's `output_dir` resumes; another run's is refused unless `--overwrite_output_dir true`, a folder of
other files always. `--cache_only true` builds the caches and exits. Rules: `modeling_avigate.training`.
"""

import dataclasses
import logging
import math
import os
import sys

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from modeling_avigate import AvigateModel
from modeling_avigate.data import load_benchmark
from modeling_avigate.embedding import prepare_feature_caches
from modeling_avigate.evaluation import evaluate_retrieval
from modeling_avigate.folders import FolderOwnershipError
from modeling_avigate.pipeline import TrainingPairs, collate_training_pairs
from modeling_avigate.processors import MediaError
from modeling_avigate.training import (
    BEST_DIR,
    NonFiniteLossError,
    TrainArguments,
    TrainerState,
    build_model,
    build_optimizer,
    build_processor,
    claim_output_dir,
    ensure_best_model,
    freeze_for_training,
    gates_held_open,
    hard_negative_sampler,
    hold_gates_open,
    is_evaluation_epoch,
    latest_checkpoint,
    load_checkpoint,
    parse_arguments,
    plan_output_dir,
    resolve_mixed_precision,
    rotate_checkpoints,
    save_checkpoint,
    weights_checksum,
    write_results,
)


logger = logging.getLogger("avigate.train")


def build_accelerator(args: TrainArguments) -> Accelerator:
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    if args.batch_size % accelerator.num_processes:
        raise SystemExit(f"--batch_size {args.batch_size} must be divisible by {accelerator.num_processes} processes")
    return accelerator


def build_caches(args: TrainArguments, accelerator: Accelerator, model: AvigateModel, processor) -> dict:
    """The feature caches: the main process builds whatever is missing, the others open the result."""
    all_videos = [load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
                  for split in {args.train_split, args.selection_split or args.test_split, args.test_split}]
    kwargs = dict(frame_cache=args.frame_cache, audio_cache=args.audio_cache, batch_size=args.eval_batch_size,
                  num_workers=args.num_workers, device=accelerator.device, strict=args.strict,
                  encoder_precision=args.encoder_precision)
    if accelerator.is_main_process:
        caches = prepare_feature_caches(model, processor, all_videos, **kwargs)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        caches = prepare_feature_caches(model, processor, all_videos, open_only=True, **kwargs)
    return caches


def build_loader(args: TrainArguments, accelerator: Accelerator, processor, caches: dict) -> DataLoader:
    """(caption, video) pairs in batches of `batch_size / processes`, optionally grouped into hard negatives."""
    pairs = load_benchmark(args.benchmark, args.data_dir, args.train_split, view="pairs", **args.benchmark_kwargs)
    dataset = TrainingPairs(pairs, processor, frame_cache=caches.get("frames"), audio_cache=caches.get("audio"),
                            strict=args.strict)
    per_process = args.batch_size // accelerator.num_processes
    sampler = hard_negative_sampler(dataset, args.hard_negative_groups, per_process, args.seed)
    return DataLoader(dataset, batch_size=per_process, shuffle=sampler is None, sampler=sampler, drop_last=True,
                      num_workers=args.num_workers, collate_fn=collate_training_pairs(processor))


def train_epoch(args, accelerator, model, optimizer, scheduler, loader, state: TrainerState, epoch: int,
                total_steps: int) -> float:
    """One pass over the loader (stopping at `total_steps`); returns the last loss."""
    model.train()
    loader.set_epoch(epoch)
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not accelerator.is_main_process)
    for batch in progress:
        with accelerator.accumulate(model):
            outputs = model(**batch, return_loss=True)  # over the batch of every process
            loss = outputs.loss
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {state.global_step} (epoch {epoch + 1}); the last good "
                    f"checkpoint is {latest_checkpoint(args.output_dir)}"
                )
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            state.global_step += 1
            logs = {"loss": loss.item(), "lr": scheduler.get_last_lr()[0],
                    "attn_gate": outputs.attn_gates.mean().item(), "ffn_gate": outputs.ffn_gates.mean().item()}
            progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items()})
            accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=state.global_step)
            if state.global_step >= total_steps:
                break
    return loss.item()


def evaluate_split(args, accelerator, model, processor, caches: dict, split: str) -> dict:
    videos = load_benchmark(args.benchmark, args.data_dir, split, view="videos", **args.benchmark_kwargs)
    return evaluate_retrieval(
        accelerator.unwrap_model(model), processor, videos, batch_size=args.eval_batch_size,
        num_workers=args.num_workers, frame_cache=caches.get("frames"), audio_cache=caches.get("audio"),
        device=accelerator.device, encoder_precision=args.encoder_precision,
    )


def train(args: TrainArguments) -> dict:
    """Build, cache, prepare, resume, then train/validate/checkpoint epoch by epoch and evaluate the best model."""
    accelerator = build_accelerator(args)
    checkpoint = None if args.cache_only else plan_output_dir(args)
    set_seed(args.seed)
    processor = build_processor(args)
    model = build_model(args, processor)
    freeze_for_training(model, args.train_audio_encoder, args.freeze_clip_embeddings)
    optimizer = build_optimizer(model, args)
    model.to(accelerator.device)
    caches = build_caches(args, accelerator, model, processor)
    if args.cache_only:
        # Caches can be built ahead of time (on a CPU machine before a GPU job, or once before runs in parallel).
        accelerator.end_training()
        return {"caches": {kind: cache.directory for kind, cache in caches.items()}}
    loader = build_loader(args, accelerator, processor, caches)
    if accelerator.is_main_process:
        claim_output_dir(args)
    accelerator.wait_for_everyone()

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or steps_per_epoch * args.epochs
    epochs = min(args.epochs, math.ceil(total_steps / steps_per_epoch))  # fewer when --max_train_steps ends sooner
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(args.warmup_proportion * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.init_trackers("avigate", config={k: v for k, v in dataclasses.asdict(args).items()
                                                  if isinstance(v, (int, float, str, bool))})
    logger.info("%d pairs, contrastive batch %d (%d per process × %d processes; gradient accumulation %d sums "
                "gradients of separate contrastive batches), %d optimiser steps", len(loader.dataset), args.batch_size,
                args.batch_size // accelerator.num_processes, accelerator.num_processes,
                args.gradient_accumulation_steps, total_steps)
    state = TrainerState()
    if checkpoint:
        state = load_checkpoint(accelerator, checkpoint)
        logger.info("resumed from %s (epoch %d done)", checkpoint, state.epoch + 1)
    if accelerator.is_main_process:
        ensure_best_model(args.output_dir, state)  # a kill after a checkpoint may have left `best/` behind it
    accelerator.wait_for_everyone()

    gate_mode = accelerator.unwrap_model(model).config.gate_mode
    first_epoch = state.epoch + 1
    for epoch in range(first_epoch, args.epochs):
        if state.global_step >= total_steps:
            break
        if args.stop_after_epochs is not None and epoch - first_epoch >= args.stop_after_epochs:
            logger.info("stopping after %d epochs as asked; continue with --resume_from_checkpoint latest",
                        args.stop_after_epochs)
            accelerator.end_training()
            return {"stopped_after_epoch": epoch}
        held = gates_held_open(epoch, epochs, args.open_gates_proportion, gate_mode)
        hold_gates_open(accelerator.unwrap_model(model), held)
        loss = train_epoch(args, accelerator, model, optimizer, scheduler, loader, state, epoch, total_steps)
        if not is_evaluation_epoch(args, epoch, first_epoch, state.global_step >= total_steps):
            continue
        t2v = None
        if args.selection_split and not held:
            t2v = evaluate_split(args, accelerator, model, processor, caches, args.selection_split)["text_to_video"]
            accelerator.log({f"{args.selection_split}/t2v_{k}": v for k, v in t2v.items()}, step=state.global_step)
            logger.info("epoch %d %s text→video %s", epoch + 1, args.selection_split, t2v)
        is_best = state.record_epoch(epoch, loss, held, args.selection_split, t2v)
        save_checkpoint(accelerator, model, processor, state, args.output_dir, is_best)
        if accelerator.is_main_process:
            ensure_best_model(args.output_dir, state)
            rotate_checkpoints(args.output_dir, args.save_total_limit, state.best_epoch)
        accelerator.wait_for_everyone()

    # The final evaluation: `best/` on the test split; `metrics.json` records the result and those weights' checksum.
    best_dir = os.path.join(args.output_dir, BEST_DIR)
    if accelerator.is_main_process:
        ensure_best_model(args.output_dir, state)
    accelerator.wait_for_everyone()
    best_model = AvigateModel.from_pretrained(best_dir).to(accelerator.device)
    # Decoded from the files, not read from the fp16 caches (which move scores by ~1e-4, enough to swap near ties):
    # the published numbers are exactly what `avigate eval` gives for `best/`.
    final = evaluate_split(args, accelerator, best_model, processor, {}, args.test_split)
    result = {
        "dataset": args.benchmark, "split": args.test_split, "selected_on": args.selection_split or "last_epoch",
        "best_epoch": state.best_epoch, "best_weights_checksum": weights_checksum(best_dir), **final,
    }
    if accelerator.is_main_process:
        write_results(args, result)
        logger.info("best epoch %d (selected on %s); %s text→video %s", state.best_epoch, result["selected_on"],
                    args.test_split, final["text_to_video"])
    accelerator.end_training()
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv, description=__doc__)
    try:
        return train(args)
    except (FolderOwnershipError, MediaError) as error:
        # The user's input is at fault (a folder we may not replace, an unusable video under --strict): one line.
        raise SystemExit(f"train.py: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
