# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate index VIDEO_DIR --model MODEL --out INDEX`: embed a folder of videos into an index folder."""

import argparse

from .arguments import add_encoder_precision_argument, add_model_arguments


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
                               encoder_precision=args.encoder_precision)
    index = build_sharded(model, processor, args.videos, args.out, options, first_stage=args.first_stage,
                          shortlist_size=args.shortlist)
    if index is not None:
        # Each skipped file and its reason were logged once while embedding; here only the count.
        print(f"indexed {len(index)} videos into {args.out}" + (f"; skipped {len(index.failures)} unreadable files "
                                                                "(listed above)" if index.failures else ""))
