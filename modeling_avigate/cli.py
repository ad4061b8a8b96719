# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate`: index a folder of videos, search it by text, inspect an index, evaluate on a benchmark, publish and
convert checkpoints. Each command lives in its own module of `modeling_avigate.commands`.

Examples:

    avigate index my_videos/ --model user/avigate-msrvtt --out my_videos.avigate
    accelerate launch -m modeling_avigate.cli index my_videos/ --model user/avigate-msrvtt --out my_videos.avigate
    avigate search my_videos.avigate "a dog barks at a car" -k 10 --json
    avigate info my_videos.avigate
    avigate serve my_videos.avigate          # search page on http://127.0.0.1:7860
    avigate eval --benchmark msrvtt --data-dir data/msrvtt --model user/avigate-msrvtt
    avigate push outputs/msrvtt/best user/avigate-msrvtt
    avigate convert --checkpoint pytorch_model.bin.4 --output-dir avigate-msrvtt-official

Errors (missing index, index built by another model, empty folder, an output that overlaps the videos or would replace
a folder that is not an index, a corrupt index file, an unreachable Hub, ...) print one line and exit with status 1.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

from .commands.convert import convert_command_parser
from .commands.eval import eval_command_parser
from .commands.index import index_command_parser
from .commands.info import info_command_parser
from .commands.push import push_command_parser
from .commands.search import search_command_parser
from .commands.serve import serve_command_parser


COMMAND_PARSERS = (index_command_parser, search_command_parser, info_command_parser, serve_command_parser,
                   eval_command_parser, push_command_parser, convert_command_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avigate", description="Search your own videos by text with AVIGATE (CVPR 2025), and evaluate it.",
        epilog="Run 'avigate COMMAND --help' for the options of each command.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command_parser in COMMAND_PARSERS:
        add_command_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `avigate` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, OSError, ImportError) as error:
        # One line, no traceback: these are user errors (missing index, wrong model, empty folder, ...).
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"avigate {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
