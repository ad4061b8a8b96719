# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Publish an AVIGATE checkpoint folder (e.g. a training run's output) to the Hugging Face Hub.

The folder is re-saved into a staging folder (safetensors weights, config, processor files, the model and processor
source files with `auto_map` for AutoConfig, AutoModel and AutoProcessor, and a model card), then uploaded in one
commit. Strangers can load the result with `trust_remote_code=True`; users of this package need no remote code.

```bash
avigate push outputs/msrvtt/best user/avigate-msrvtt --eval-results outputs/msrvtt/best/eval_results.json
```
"""

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from transformers.utils import logging

from modeling_avigate import AvigateModel


try:  # the HTTP library of huggingface_hub: httpx2 in recent versions, httpx before
    from httpx2 import HTTPError as TransportError
except ImportError:
    from httpx import HTTPError as TransportError

from .model_card import EVAL_RESULTS_FILE, TRAIN_ARGS_FILE, find_eval_results, load_eval_results, write_model_card


logger = logging.get_logger(__name__)

# The processor writes `processor_config.json`; older folders may only hold the tokenizer and feature extractor files.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
REMOTE_CODE_CLASSES = {"config.json": ("AutoConfig", "AutoModel"), "processor_config.json": ("AutoProcessor",)}


def _check_remote_code(staging_dir: Path, has_processor: bool) -> None:
    """Fail before uploading if a saved file lacks the `auto_map` entries that `trust_remote_code` loading needs."""
    for file_name, classes in REMOTE_CODE_CLASSES.items():
        if file_name == "processor_config.json" and not has_processor:
            continue
        auto_map = json.loads((staging_dir / file_name).read_text(encoding="utf-8")).get("auto_map", {})
        missing = [name for name in classes if name not in auto_map]
        if missing:
            raise RuntimeError(f"{file_name} in the staging folder has no auto_map entry for {missing}")
        for reference in auto_map.values():
            module_file = staging_dir / f"{reference.split('.')[0]}.py"
            if not module_file.is_file():
                raise RuntimeError(f"{file_name} maps to {reference} but {module_file.name} was not saved")


def stage_avigate_checkpoint(
    checkpoint_dir: str | Path,
    staging_dir: str | Path,
    eval_results: str | Path | Mapping | Sequence[Mapping] | None = None,
    *,
    repo_id: str | None = None,
    **card_kwargs: Any,
) -> Path:
    """
    Write everything a Hub repository needs into `staging_dir`: the model (safetensors, config, remote code), the
    processor when `checkpoint_dir` has processor files, the evaluation records (`eval_results.json`), the run's
    training arguments (`train_args.json`, when the folder has them) and the model card (`README.md`), which
    describes the run from those files.

    Args:
        checkpoint_dir: a folder written by `save_pretrained` (training checkpoints, optimizer states and other files
            in it are not copied).
        staging_dir: an empty or new folder.
        eval_results: evaluation records for the card; defaults to `checkpoint_dir/eval_results.json` if present.
        repo_id: the repository named in the card; defaults to the checkpoint folder's name.
        card_kwargs: passed to [`build_model_card`].

    Returns:
        `staging_dir`.

    Raises:
        FileNotFoundError: `checkpoint_dir` is not a `save_pretrained` folder.
        ValueError: the evaluation records do not follow the documented format (the message names the field).
    """
    checkpoint_dir, staging_dir = Path(checkpoint_dir), Path(staging_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir} has no config.json: not a save_pretrained folder")
    # Loading and re-saving (rather than copying files) guarantees safetensors weights and up-to-date remote code
    # and auto_map, whatever version of the package wrote the checkpoint.
    model = AvigateModel.from_pretrained(checkpoint_dir)
    model.save_pretrained(staging_dir, safe_serialization=True)
    has_processor = any((checkpoint_dir / name).is_file() for name in PROCESSOR_FILES)
    if has_processor:
        # Imported here because the processor needs PyAV, which a model-only repository (or conversion) does not.
        from modeling_avigate.processors import AvigateProcessor

        AvigateProcessor.from_pretrained(checkpoint_dir).save_pretrained(staging_dir)
    else:
        logger.warning(f"{checkpoint_dir} has no processor files; the repository will hold the model only")
    _check_remote_code(staging_dir, has_processor)
    records = load_eval_results(eval_results if eval_results is not None else find_eval_results(checkpoint_dir))
    if records:
        (staging_dir / EVAL_RESULTS_FILE).write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    # The run's arguments travel with its weights: the card's lineage (base_model, recipe) is read from them.
    if (checkpoint_dir / TRAIN_ARGS_FILE).is_file():
        shutil.copyfile(checkpoint_dir / TRAIN_ARGS_FILE, staging_dir / TRAIN_ARGS_FILE)
    write_model_card(staging_dir, repo_id=repo_id or checkpoint_dir.resolve().name, **card_kwargs)
    return staging_dir


def push_avigate_to_hub(
    checkpoint_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    eval_results: str | Path | Mapping | Sequence[Mapping] | None = None,
    commit_message: str = "Upload AVIGATE model",
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    validate_card: bool = True,
    **card_kwargs: Any,
) -> CommitInfo:
    """
    Publish an AVIGATE checkpoint folder as a Hub model repository (created if needed) in one commit.

    Args:
        checkpoint_dir: a folder written by `save_pretrained`, with processor files for a complete repository.
        repo_id: `"user/name"` of the target repository.
        private: create the repository as private (has no effect on an existing repository).
        eval_results: evaluation records for the card (a JSON file, a record or a list; format in `docs/hub.md`);
            defaults to `checkpoint_dir/eval_results.json` if present.
        commit_message: message of the upload commit.
        token: a Hub token; defaults to the logged-in user's.
        revision: branch to commit to.
        create_pr: open a pull request instead of committing to the branch.
        validate_card: check the card's metadata with the Hub before uploading (needs the network).
        card_kwargs: passed to [`build_model_card`] (`license`, `datasets`, `training_args`, `extra_tags`, ...).

    Returns:
        The commit's `CommitInfo`.

    Example (needs a Hub token and the network):

    ```python
    >>> from modeling_avigate.hub import push_avigate_to_hub
    >>> push_avigate_to_hub("outputs/msrvtt/best", "user/avigate-msrvtt")  # doctest: +SKIP
    >>> from transformers import AutoModel
    >>> model = AutoModel.from_pretrained("user/avigate-msrvtt", trust_remote_code=True)  # doctest: +SKIP
    ```
    """
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as staging:
        stage_avigate_checkpoint(checkpoint_dir, staging, eval_results, repo_id=repo_id, **card_kwargs)
        with hub_errors(repo_id):
            return _upload(api, staging, repo_id, validate_card, private=private, commit_message=commit_message,
                    revision=revision, create_pr=create_pr)


class HubConnectionError(ConnectionError):
    """The Hub could not be reached, or it refused the request; the message names the repository and the cause."""


@contextmanager
def hub_errors(repo_id: str):
    """Turn the Hub client's network and HTTP errors (several retries' worth of traceback) into one
    `HubConnectionError` naming the repository and the cause."""
    try:
        yield
    except (HfHubHTTPError, TransportError, OSError) as error:
        cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubConnectionError(f"could not push to {repo_id}: {cause}") from error


def _upload(api: HfApi, staging: str, repo_id: str, validate_card: bool, **commit_kwargs: Any) -> CommitInfo:
    if validate_card:
        ModelCard.load(Path(staging) / "README.md").validate()
    api.create_repo(repo_id, private=commit_kwargs["private"], exist_ok=True, repo_type="model")
    # One explicit commit of the staged files (upload_folder would re-validate the card over the network even when
    # validate_card is False).
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=path)
        for path in sorted(Path(staging).rglob("*"))
        if path.is_file()
    ]
    return api.create_commit(
        repo_id=repo_id, operations=operations, commit_message=commit_kwargs["commit_message"],
        revision=commit_kwargs["revision"], create_pr=commit_kwargs["create_pr"], repo_type="model",
    )
