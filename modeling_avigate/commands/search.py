# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate search INDEX QUERY`: rank the indexed videos for a text query."""

import argparse
import json
import math

from .arguments import add_index_arguments, positive_int


def search_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("search", help="rank the indexed videos for a text query",
                                   description="Rank the videos of INDEX for QUERY by AVIGATE's multi-grained score.")
    add_index_arguments(parser)
    parser.add_argument("query", metavar="QUERY", help="the text to search for")
    parser.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--exact", action="store_true", help="scan every video even if the index has a first stage")
    parser.set_defaults(func=search_command)
    return parser


def search_command(args: argparse.Namespace) -> None:
    from .loading import open_index

    results = open_index(args).search(args.query, k=args.k, exact=args.exact)
    if args.json:
        # A non-finite score (a video whose embeddings are NaN) is null: JSON has no NaN or Infinity.
        hits = [{**hit.to_dict(), "score": hit.score if math.isfinite(hit.score) else None} for hit in results]
        print(json.dumps(hits, indent=1, allow_nan=False))
        return
    for rank, hit in enumerate(results, start=1):
        print(f"{rank:3d}  {hit.score:8.3f}  {hit.path}")
