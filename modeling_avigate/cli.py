# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate`: index a folder of videos, search it by text, inspect an index, evaluate on a benchmark.

Examples:

    avigate index my_videos/ --model user/avigate-msrvtt --out my_videos.avigate
    accelerate launch -m modeling_avigate.cli index my_videos/ --model user/avigate-msrvtt --out my_videos.avigate
    avigate search my_videos.avigate "a dog barks at a car" -k 10 --json
    avigate info my_videos.avigate
    avigate serve my_videos.avigate          # search page on http://127.0.0.1:7860
    avigate upgrade-index old_index.avigate  # convert an index of an older format in place
    avigate eval --benchmark msrvtt --data-dir data/msrvtt --model user/avigate-msrvtt

Errors (missing index, index built by another model, empty folder, an output that overlaps the videos or would replace
a folder that is not an index, a corrupt index file, ...) print one line and exit with status 1.
"""

import argparse
import functools
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence


def accept_underscore_flags(argv: Sequence[str]) -> list[str]:
    """Every option is spelled with dashes (`--eval-results`); the older underscore spellings (`--eval_results`) are
    rewritten to them so scripts written for either keep working.

    Example:

    ```python
    >>> accept_underscore_flags(["ckpt", "--eval_results=r.json", "--stage_only", "out_dir"])
    ['ckpt', '--eval-results=r.json', '--stage-only', 'out_dir']
    ```
    """
    return [re.sub(r"^--[A-Za-z0-9_-]+", lambda flag: flag.group(0).replace("_", "-"), argument)
            for argument in argv]


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# A Hub repo id: `name` or `namespace/name`. Anything else (absolute, `./x`, `a/b/c`) can only be a local folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _load_model_and_processor(name: str, revision: str | None, device: str | None):
    import torch

    from . import AvigateModel
    from .processors import AvigateProcessor

    if not os.path.isdir(name) and not HUB_ID.fullmatch(name):
        raise FileNotFoundError(f"model folder not found: {name}")
    try:
        model = AvigateModel.from_pretrained(name, revision=revision).eval()
        processor = AvigateProcessor.from_pretrained(name, revision=revision)
    except OSError as error:
        if os.path.isdir(name):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FileNotFoundError(f"model folder not found: {name} (and no Hub repo of that name could be loaded: "
                                f"{reason})") from error
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model, processor


def _index(args: argparse.Namespace) -> None:
    from .media_files import resolve_videos
    from .search import build_sharded, check_index_output

    paths = resolve_videos(args.videos)  # fail on a missing or empty folder before loading the model
    check_index_output(args.out, [args.videos])  # and on an output that would touch the videos or a foreign folder
    model, processor = _load_model_and_processor(args.model, args.revision, args.device)
    index = build_sharded(model, processor, paths, args.out, batch_size=args.batch_size,
                          num_workers=args.num_workers, first_stage=args.first_stage, shortlist_size=args.shortlist,
                          strict=args.strict, encoder_precision=args.encoder_precision)
    if index is not None:
        print(f"indexed {len(index)} videos into {args.out}" + (f"; skipped {len(index.failures)} unreadable files"
                                                                if index.failures else ""))
        for failure in index.failures:
            print(f"  skipped {failure['path']}: {failure['error']}", file=sys.stderr)


def _open_index(args: argparse.Namespace):
    """The index with its model attached: `--model` if given, else the model the index records, used only when its
    fingerprints still match the index (a folder retrained in place, or a Hub repo updated since, is refused)."""
    from .search import IncompatibleModelError, VideoIndex

    index = VideoIndex.load(args.index, verify=not args.no_verify)  # a corrupt index fails before the model loads
    recorded = index.info["model"]
    if args.model is None and "weights_fingerprint" not in recorded:
        raise ValueError(f"{args.index} was built from precomputed embeddings and records no model; pass --model")
    name = args.model or recorded["name_or_path"]
    revision = args.revision or (None if args.model else recorded.get("revision"))
    model, processor = _load_model_and_processor(name, revision, args.device)
    problems = [] if args.force else index.model_mismatches(model, processor)
    if problems:
        if args.model:
            raise IncompatibleModelError(f"--model {name} did not build this index ({', '.join(problems)}); rebuild "
                                         "the index with it, or pass --force to query anyway")
        raise IncompatibleModelError(f"the model {name} recorded in the index no longer matches it "
                                     f"({', '.join(problems)}); pass --model with the model that built the index, "
                                     "rebuild the index, or pass --force to query anyway")
    return index.attach(model, processor, force=True)


def _search(args: argparse.Namespace) -> None:
    index = _open_index(args)
    results = index.search(args.query, k=args.k, exact=args.exact)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in results], indent=1))
        return
    for rank, hit in enumerate(results, start=1):
        print(f"{rank:3d}  {hit.score:8.3f}  {hit.path}")


def _info(args: argparse.Namespace) -> None:
    from .search import VideoIndex

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


def _serve(args: argparse.Namespace) -> None:
    try:
        from .serve.app import create_app, run
        from .serve.search_page import relocate_videos
    except ImportError as error:
        raise ImportError(f"avigate serve needs Gradio: pip install 'modeling-avigate[serve]' ({error})") from error

    index = _open_index(args)
    if args.videos_dir:
        relocate_videos(index, args.videos_dir)
    print(f"serving {len(index)} videos of {args.index} on http://{args.host}:{args.port}/ (Ctrl+C stops)")
    run(create_app(index, page_size=args.page_size, share_nothing=args.share_nothing), args.host, args.port)


def _upgrade_index(args: argparse.Namespace) -> None:
    from .search import FORMAT_VERSION, VideoIndex

    index = VideoIndex.upgrade(args.index)
    print(f"{args.index}: {len(index)} videos, index format {FORMAT_VERSION}")


def _eval(args: argparse.Namespace) -> None:
    from .data import load_benchmark
    from .evaluation import evaluate_retrieval

    # The benchmark's files are checked before the (possibly downloaded) model is loaded.
    videos = load_benchmark(args.benchmark, args.data_dir, args.split, view="videos")
    model, processor = _load_model_and_processor(args.model, args.revision, args.device)
    metrics = evaluate_retrieval(model, processor, videos, batch_size=args.batch_size, num_workers=args.num_workers,
                                 dual_softmax_temperature=args.dual_softmax_temperature, strict=args.strict,
                                 encoder_precision=args.encoder_precision)
    print(json.dumps({"benchmark": args.benchmark, "split": args.split, **metrics}, indent=1))


# Commands whose own argument parsers live in `modeling_avigate.hub`; `avigate NAME ...` forwards to them.
HUB_COMMANDS = {
    "push": ("modeling_avigate.hub.push", "publish a checkpoint folder to the Hub (model, processor, remote code, "
                                          "model card)"),
    "convert": ("modeling_avigate.hub.convert_avigate_original_checkpoint",
                "convert the official AVIGATE checkpoint, or OpenAI CLIP + AST files, into a model folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avigate", description="Search your own videos by text with AVIGATE (CVPR 2025), and evaluate it.",
        epilog="Run 'avigate COMMAND --help' for the options of each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(command: argparse.ArgumentParser, required: bool) -> None:
        command.add_argument("--model", required=required,
                             help="model folder or Hub repo id" + ("" if required else
                                                                   " (default: the one recorded in the index)"))
        command.add_argument("--revision", help="Hub revision of --model")
        command.add_argument("--device", help="torch device (default: cuda when available, else cpu)")

    def precision_option(command: argparse.ArgumentParser) -> None:
        # Literal choices (the values of `fast_inference.ENCODER_PRECISIONS`) so that building the parser does not
        # import torch.
        command.add_argument("--encoder-precision", choices=("fp32", "int8", "int8-audio", "bf16"),
                             default="fp32",
                             help="precision of the frozen vision and audio encoders while embedding videos: 'int8' "
                                  "(CPU dynamic quantisation, about 2x less CPU time per video, can reorder near "
                                  "ties), 'int8-audio' (the audio encoder only, 1.47x) or 'bf16' (GPU) "
                                  "(default fp32)")

    index = commands.add_parser(
        "index", help="embed a folder of videos into an index",
        description="Embed every video under VIDEO_DIR (recursively) and write an index folder. Unreadable files are "
                    "skipped and listed. Under 'accelerate launch' each process embeds a share and the shards are "
                    "merged.")
    index.add_argument("videos", metavar="VIDEO_DIR", help="folder of video files")
    model_options(index, required=True)
    index.add_argument("--out", required=True, metavar="INDEX",
                       help="index folder to write; replaced atomically, and only if it is an index (never inside, "
                            "equal to or containing VIDEO_DIR)")
    index.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (default 8)")
    index.add_argument("--num-workers", type=int, default=2, help="decoding processes (default 2)")
    index.add_argument("--first-stage", choices=["flat", "pq", "hnsw", "ivf"],
                       help="faiss first stage over global embeddings for large galleries: 'pq' for millions of "
                            "videos (default: exact scan)")
    index.add_argument("--shortlist", type=int, default=256, help="first-stage candidates per query (default 256)")
    index.add_argument("--strict", action="store_true",
                       help="stop at the first unusable video file instead of skipping and listing it")
    precision_option(index)
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="rank the indexed videos for a text query",
                                 description="Rank the videos of INDEX for QUERY by AVIGATE's multi-grained score.")
    search.add_argument("index", metavar="INDEX", help="index folder written by 'avigate index'")
    search.add_argument("query", metavar="QUERY", help="the text to search for")
    search.add_argument("-k", type=positive_int, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.add_argument("--exact", action="store_true", help="scan every video even if the index has a first stage")
    search.add_argument("--force", action="store_true", help="query with a model that did not build the index")
    search.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    model_options(search, required=False)
    search.set_defaults(run=_search)

    info = commands.add_parser("info", help="describe an index", description="Print an index's size, model, "
                               "processor settings and first-stage mode as JSON.")
    info.add_argument("index", metavar="INDEX")
    info.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    info.set_defaults(run=_info)

    serve = commands.add_parser(
        "serve", help="a search page for an index in the browser",
        description="Serve a search page over INDEX: results with poster frames, score parts and audio gates; click "
                    "to play a clip from its best-matching frame; 'more like this'. Only the indexed files are served.")
    serve.add_argument("index", metavar="INDEX", help="index folder written by 'avigate index'")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    serve.add_argument("--videos-dir", metavar="DIR",
                       help="the indexed videos were moved here (same layout below their common folder)")
    serve.add_argument("--page-size", type=int, default=12, help="results per page (default 12)")
    serve.add_argument("--share-nothing", action="store_true",
                       help="no usage analytics and no web fonts: the page contacts nothing but this server")
    serve.add_argument("--force", action="store_true", help="query with a model that did not build the index")
    serve.add_argument("--no-verify", action="store_true", help="skip the checksum check of the index files")
    model_options(serve, required=False)
    serve.set_defaults(run=_serve)

    upgrade = commands.add_parser(
        "upgrade-index", help="convert an index of an older format in place",
        description="Rewrite INDEX in the current format, atomically. From format 1: decodes one poster frame per "
                    "video; the embeddings are kept (audio gates are then unknown until the index is rebuilt).")
    upgrade.add_argument("index", metavar="INDEX")
    upgrade.set_defaults(run=_upgrade_index)

    evaluate = commands.add_parser(
        "eval", help="retrieval metrics on a benchmark",
        description="Text→video and video→text R@1/5/10, MdR, MnR on a benchmark split (each text and each video "
                    "embedded once).")
    evaluate.add_argument("--benchmark", required=True, help="msrvtt, vatex, charades or synthetic")
    evaluate.add_argument("--data-dir", required=True, help="the benchmark's annotations and videos")
    evaluate.add_argument("--split", default="test", help="split to evaluate (default test)")
    model_options(evaluate, required=True)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--num-workers", type=int, default=2)
    evaluate.add_argument("--strict", action="store_true",
                          help="stop at the first unusable video file instead of skipping and listing it")
    evaluate.add_argument("--dual-softmax-temperature", type=float,
                          help="turn on dual-softmax re-normalisation (labelled '+dsl' in the output)")
    precision_option(evaluate)
    evaluate.set_defaults(run=_eval)
    for name, (_, summary) in HUB_COMMANDS.items():
        commands.add_parser(name, help=summary + f" (see 'avigate {name} --help')", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `avigate` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = accept_underscore_flags(argv)
    if argv and argv[0] in HUB_COMMANDS:
        command = argv[0]
        run = functools.partial(importlib.import_module(HUB_COMMANDS[command][0]).main, argv[1:],
                                prog=f"avigate {command}")
    else:
        args = build_parser().parse_args(argv)
        command, run = args.command, functools.partial(args.run, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run()
    except (FileNotFoundError, ValueError, OSError, ImportError) as error:
        # One line, no traceback: these are user errors (missing index, wrong model, empty folder, ...).
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"avigate {command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
