# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Loading what the `avigate` commands run: a model with its processor, and an index with the model that built it."""

import argparse
import os
import pickle
import re


# A Hub repo id: `name` or `namespace/name`. Anything else (absolute, `./x`, `a/b/c`) can only be a local folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def load_model_and_processor(name: str, revision: str | None, device: str | None):
    """The model (in eval mode, on `device` or the GPU when there is one) and processor of a folder or Hub repo."""
    import torch

    from .. import AvigateModel
    from ..processors import AvigateProcessor

    if not os.path.isdir(name) and not HUB_ID.fullmatch(name):
        raise FileNotFoundError(f"model folder not found: {name}")
    try:
        model = AvigateModel.from_pretrained(name, revision=revision).eval()
        processor = AvigateProcessor.from_pretrained(name, revision=revision)
    except pickle.UnpicklingError as error:
        from transformers.utils import WEIGHTS_NAME

        from ..hub.convert_avigate_original_checkpoint import weights_only_refusal

        weights = os.path.join(name, WEIGHTS_NAME)  # the pickled weights file transformers read
        raise weights_only_refusal(weights if os.path.isfile(weights) else name, error) from error
    except OSError as error:
        if os.path.isdir(name):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FileNotFoundError(f"model folder not found: {name} (and no Hub repo of that name could be loaded: "
                                f"{reason})") from error
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model, processor


def open_index(args: argparse.Namespace):
    """The index with its model attached: `--model` if given, else the model the index records, used only when its
    fingerprints still match the index (a folder retrained in place, or a Hub repo updated since, is refused)."""
    from ..search import IncompatibleModelError, VideoIndex

    index = VideoIndex.load(args.index, verify=not args.no_verify)  # a corrupt index fails before the model loads
    recorded = index.info["model"]
    if args.model is None and "weights_fingerprint" not in recorded:
        raise ValueError(f"{args.index} was built from precomputed embeddings and records no model; pass --model")
    name = args.model or recorded["name_or_path"]
    revision = args.revision or (None if args.model else recorded.get("revision"))
    model, processor = load_model_and_processor(name, revision, args.device)
    problems = [] if args.force else index.model_mismatches(model, processor)
    if problems:
        if args.model:
            raise IncompatibleModelError(f"--model {name} did not build this index ({', '.join(problems)}); rebuild "
                                         "the index with it, or pass --force to query anyway")
        raise IncompatibleModelError(f"the model {name} recorded in the index no longer matches it "
                                     f"({', '.join(problems)}); pass --model with the model that built the index, "
                                     "rebuild the index, or pass --force to query anyway")
    return index.attach(model, processor, force=True)
