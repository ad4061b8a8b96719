# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate eval --benchmark NAME --data-dir DIR --model MODEL`: retrieval metrics of a model on a benchmark split."""

import argparse
import json

from .arguments import add_encoder_precision_argument, add_model_arguments


def eval_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval", help="retrieval metrics on a benchmark",
        description="Text→video and video→text R@1/5/10, MdR, MnR on a benchmark split (each text and each video "
                    "embedded once).")
    parser.add_argument("--benchmark", required=True, help="msrvtt, vatex, charades or synthetic")
    parser.add_argument("--data-dir", required=True, help="the benchmark's annotations and videos")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    add_model_arguments(parser, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unusable video file instead of skipping and listing it")
    parser.add_argument("--dual-softmax-temperature", type=float,
                        help="turn on dual-softmax re-normalisation (labelled '+dsl' in the output)")
    add_encoder_precision_argument(parser)
    parser.set_defaults(func=eval_command)
    return parser


def eval_command(args: argparse.Namespace) -> None:
    from ..data import load_benchmark
    from ..evaluation import evaluate_retrieval
    from .loading import load_model_and_processor

    # The benchmark's files are checked before the (possibly downloaded) model is loaded.
    videos = load_benchmark(args.benchmark, args.data_dir, args.split, view="videos")
    model, processor = load_model_and_processor(args.model, args.revision, args.device)
    metrics = evaluate_retrieval(model, processor, videos, batch_size=args.batch_size, num_workers=args.num_workers,
                                 dual_softmax_temperature=args.dual_softmax_temperature, strict=args.strict,
                                 encoder_precision=args.encoder_precision)
    print(json.dumps({"benchmark": args.benchmark, "split": args.split, **metrics}, indent=1))
