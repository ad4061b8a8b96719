# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate convert --checkpoint FILE --output-dir DIR` (or `--clip-checkpoint` + `--ast-checkpoint`): convert the
official AVIGATE checkpoint, or OpenAI CLIP + AST files, into a Hugging Face model folder."""

import argparse
import json


def convert_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert", help="convert the official AVIGATE checkpoint, or OpenAI CLIP + AST files, into a model folder",
        description="Convert original AVIGATE weights (or OpenAI CLIP + original AST weights, the paper's initial "
                    "model) into a Hugging Face model folder. No code from the files is run.")
    parser.add_argument("--output-dir", required=True, help="folder to write the Hugging Face model into")
    parser.add_argument("--checkpoint", help="official AVIGATE training checkpoint (pytorch_model.bin.N)")
    parser.add_argument("--clip-checkpoint", help="OpenAI CLIP checkpoint (e.g. ViT-B-32.pt), with --ast-checkpoint")
    parser.add_argument("--ast-checkpoint", help="original AST checkpoint (audioset_10_10_0.4593.pth)")
    parser.add_argument("--config", help="AvigateConfig JSON file (or folder with config.json) instead of inference")
    parser.add_argument("--config-overrides", type=json.loads, default=None,
                        help='AvigateConfig fields (JSON) set on the inferred config, e.g. \'{"margin_max": 0.05}\'')
    parser.add_argument("--allow-partial", action="store_true", help="write the model even if keys are missing")
    parser.set_defaults(func=convert_command)
    return parser


def convert_command(args: argparse.Namespace) -> None:
    from .. import AvigateConfig
    from ..hub import convert_avigate_original_checkpoint

    config = AvigateConfig.from_pretrained(args.config) if args.config else None
    report = convert_avigate_original_checkpoint(
        args.output_dir,
        checkpoint_path=args.checkpoint,
        clip_checkpoint_path=args.clip_checkpoint,
        ast_checkpoint_path=args.ast_checkpoint,
        config=config,
        config_overrides=args.config_overrides,
        allow_partial=args.allow_partial,
    )
    print(report.format())
    print(f"Saved to {args.output_dir}")
