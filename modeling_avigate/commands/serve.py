# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate serve INDEX`: a search page for an index in the browser."""

import argparse

from .arguments import add_index_arguments


def serve_command_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="a search page for an index in the browser",
        description="Serve a search page over INDEX: results with poster frames, score parts and audio gates; click "
                    "to play a clip from its best-matching frame; 'more like this'. Only the indexed files are served.")
    add_index_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--videos-dir", metavar="DIR",
                        help="the indexed videos were moved here (same layout below their common folder)")
    parser.add_argument("--page-size", type=int, default=12, help="results per page (default 12)")
    parser.add_argument("--share-nothing", action="store_true",
                        help="no usage analytics and no web fonts: the page contacts nothing but this server")
    parser.set_defaults(func=serve_command)
    return parser


def serve_command(args: argparse.Namespace) -> None:
    try:
        from ..serve.app import bind, create_app, run
        from ..serve.search_page import relocate_videos
    except ImportError as error:
        raise ImportError(f"avigate serve needs Gradio: pip install 'modeling-avigate[serve]', or in a clone of the "
                          f"repository .venv/bin/pip install -e '.[serve]' ({error})") from error
    from .loading import open_index

    index = open_index(args)
    if args.videos_dir:
        relocate_videos(index, args.videos_dir)
    app = create_app(index, page_size=args.page_size, share_nothing=args.share_nothing)
    listener = bind(args.host, args.port)  # a port in use is one error line, before anything is announced
    print(f"serving {len(index)} videos of {args.index} on http://{args.host}:{args.port}/ (Ctrl+C stops)")
    run(app, listener)
