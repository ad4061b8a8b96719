# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate index VIDEO_DIR --model MODEL --out INDEX`: embed a folder of videos into an index folder."""

import argparse

from .arguments import add_encoder_precision_argument, add_model_arguments


# Segment length: the model was trained on 10–30 s MSR-VTT clips with 12 frames each, so 10 s keeps its frame
# density (1.2 frames/s) at the low end of what it saw; each segment costs one clip (~6 CPU-s with the full-size model,
# docs/search.md).
DEFAULT_SEGMENT_SECONDS = 10.0


def index_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "index", help="embed a folder of videos into an index",
        description="Embed every video under VIDEO_DIR (recursively) and write an index folder. Unreadable files are "
                    "skipped and listed. Under 'accelerate launch' each process embeds a share and the shards are "
                    "merged.")
    parser.add_argument("videos", metavar="VIDEO_DIR", help="folder of video files")
    add_model_arguments(parser, required=True)
    parser.add_argument("--out", required=True, metavar="INDEX",
                        help="index folder to write; replaced atomically, and only if it is an index (never inside, "
                             "equal to or containing VIDEO_DIR)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (default 8)")
    parser.add_argument("--num-workers", type=int, default=2, help="decoding processes (default 2)")
    parser.add_argument("--first-stage", choices=["flat", "pq", "hnsw", "ivf"],
                        help="faiss first stage over global embeddings for large galleries: 'pq' for millions of "
                             "videos (default: exact scan)")
    parser.add_argument("--shortlist", type=int, default=256, help="first-stage candidates per query (default 256)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unusable video file instead of skipping and listing it")
    parser.add_argument("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                        help="cut each file into segments of this many seconds, each embedded as one clip; a shorter "
                             f"file is one segment; 0 embeds whole files (default {DEFAULT_SEGMENT_SECONDS:g})")
    parser.add_argument("--stride-seconds", type=float,
                        help="seconds between segment starts; less than --segment-seconds overlaps them (default: "
                             "--segment-seconds)")
    parser.add_argument("--prune", action="store_true",
                        help="updating an existing INDEX, also drop the files that no longer exist (kept otherwise)")
    add_encoder_precision_argument(parser)
    parser.set_defaults(func=index_command)
    return parser


def index_command(args: argparse.Namespace) -> None:
    from ..embedding import EmbeddingOptions
    from ..media_files import find_video_files
    from ..search import build_sharded, check_index_output
    from .loading import load_model_and_processor

    find_video_files(args.videos)  # fail on a missing or empty folder before loading the model
    check_index_output(args.out, [args.videos])  # and on an output that would touch the videos or a foreign folder
    model, processor = load_model_and_processor(args.model, args.revision, args.device)
    options = EmbeddingOptions(batch_size=args.batch_size, num_workers=args.num_workers, strict=args.strict,
                               encoder_precision=args.encoder_precision,
                               segment_seconds=args.segment_seconds or None, stride_seconds=args.stride_seconds)
    index = build_sharded(model, processor, args.videos, args.out, options, first_stage=args.first_stage,
                          shortlist_size=args.shortlist, prune=args.prune)
    if index is not None:
        # Each skipped file and its reason were logged once while embedding; here only the count.
        print(f"indexed {len(index.files)} videos ({len(index)} segments) into {args.out}"
              + (f"; skipped {len(index.failures)} unreadable files (listed above)" if index.failures else ""))
