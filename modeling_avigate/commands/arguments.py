# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Arguments several `avigate` commands share."""

import argparse


# The values of `fast_inference.ENCODER_PRECISIONS`, written out so that building a parser does not import torch.
ENCODER_PRECISIONS = ("fp32", "int8", "int8-audio", "bf16")


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """`--model`, `--revision`, `--device`; an optional `--model` defaults to the model recorded in the index."""
    parser.add_argument("--model", required=required,
                        help="model folder or Hub repo id" + ("" if required else
                                                              " (default: the one recorded in the index)"))
    parser.add_argument("--revision", help="Hub revision of --model")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def add_encoder_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder-precision", choices=ENCODER_PRECISIONS, default="fp32",
                        help="precision of the frozen vision and audio encoders while embedding videos: 'int8' (CPU "
                             "dynamic quantisation, about 2x less CPU time per video, can reorder near ties), "
                             "'int8-audio' (the audio encoder only, 1.47x) or 'bf16' (GPU) (default fp32)")


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of the commands that query an index: the folder, the model check and the checksum check."""
    parser.add_argument("index", metavar="INDEX", help="index folder written by 'avigate index'")
    parser.add_argument("--force", action="store_true", help="query with a model that did not build the index")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    add_model_arguments(parser, required=False)
