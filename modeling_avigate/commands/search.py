# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate search INDEX QUERY`: rank the indexed videos for a text query."""

import argparse
import json

from .arguments import add_index_arguments, positive_int


def search_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("search", help="rank the indexed videos for a text query",
                                   description="Rank the videos of INDEX for QUERY by AVIGATE's multi-grained score.")
    add_index_arguments(parser)
    parser.add_argument("query", metavar="QUERY", help="the text to search for")
    parser.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    parser.add_argument("--segments", action="store_true",
                        help="list the best segments alone, several per file possibly (default: one line per file, "
                             "its best segment, with the file's other matching segments indented below it)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--exact", action="store_true", help="scan every video even if the index has a first stage")
    parser.set_defaults(func=search_command)
    return parser


def search_command(args: argparse.Namespace) -> None:
    from .loading import open_index

    results = open_index(args).search(args.query, k=args.k, exact=args.exact, per_file=not args.segments)
    if args.json:
        # Scores are finite (a video whose score is not is never ranked): JSON has no NaN or Infinity.
        print(json.dumps([hit.to_dict() for hit in results], indent=1, allow_nan=False))
        return
    for rank, hit in enumerate(results, start=1):
        print(f"{rank:3d}  {result_line(hit)}")
        for other in hit.others:
            print(f"     {result_line(other)}")


def result_line(hit) -> str:
    """`file  start–end  score`, the span as m:ss.s (omitted for an index built from raw embeddings)."""
    span = "" if hit.start is None else f"  {clock(hit.start)}–{clock(hit.end)}"
    return f"{hit.path}{span}  {hit.score:.3f}"


def clock(seconds: float) -> str:
    """`83.25` → `1:23.2`; hours when needed (`1:02:03.0`)."""
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:04.1f}" if hours else f"{minutes}:{seconds:04.1f}"
