# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate info INDEX`: an index's size, model, processor settings and first-stage mode as JSON."""

import argparse
import json
import os


def info_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info", help="describe an index",
        description="Print an index's size, model, processor settings and first-stage mode as JSON, from index.json "
                    "after checking the data files' checksums ('avigate search' also checks that the files agree "
                    "with it).")
    parser.add_argument("index", metavar="INDEX")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    parser.set_defaults(func=info_command)
    return parser


def info_command(args: argparse.Namespace) -> None:
    # Read from index.json and one small tensor, without torch: the summary needs no model and no embeddings.
    from safetensors import SafetensorError, safe_open

    from ..search.metadata import EMBEDDINGS_FILE, CorruptIndexError, check_data_files, read_metadata

    metadata = read_metadata(args.index)
    check_data_files(args.index, metadata, verify=not args.no_verify)
    embeddings = os.path.join(args.index, EMBEDDINGS_FILE)
    try:
        with safe_open(embeddings, framework="numpy") as tensors:
            has_audio = tensors.get_tensor("has_audio")
    except (SafetensorError, OSError) as error:
        raise CorruptIndexError(f"{embeddings} cannot be read ({error}); rebuild the index") from error
    if has_audio.shape != (metadata["num_videos"],):
        raise CorruptIndexError(f"{embeddings} holds has_audio of shape {has_audio.shape}, {args.index} lists "
                                f"{metadata['num_videos']} videos; rebuild the index")
    summary = {
        "videos": len({entry["path"] for entry in metadata["videos"]}),
        "segments": metadata["num_videos"],
        "segment_settings": metadata["segments"],
        "frames_per_video": metadata["num_frames"],
        "dim": metadata["dim"],
        "with_audio": int(has_audio.sum()),
        "skipped_files": len(metadata["failures"]),
        "first_stage": metadata["first_stage"] or "none (exact scan)",
        "model": metadata["model"],
        "processor": metadata["processor"],
    }
    print(json.dumps(summary, indent=1, default=str))
