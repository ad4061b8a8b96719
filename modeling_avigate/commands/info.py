# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate info INDEX`: an index's size, model, processor settings and first-stage mode as JSON."""

import argparse
import json


def info_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help="describe an index", description="Print an index's size, model, "
                                   "processor settings and first-stage mode as JSON.")
    parser.add_argument("index", metavar="INDEX")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    parser.set_defaults(func=info_command)
    return parser


def info_command(args: argparse.Namespace) -> None:
    from ..search import VideoIndex

    index = VideoIndex.load(args.index, verify=not args.no_verify)
    summary = {
        "videos": len(index),
        "frames_per_video": index.frame_embeds.shape[1],
        "dim": index.frame_embeds.shape[2],
        "with_audio": int(index.has_audio.sum()),
        "skipped_files": len(index.failures),
        "first_stage": index.info["first_stage"] or "none (exact scan)",
        "model": index.info["model"],
        "processor": index.info["processor"],
    }
    print(json.dumps(summary, indent=1, default=str))
