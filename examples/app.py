#!/usr/bin/env python
"""The `avigate serve` search page as a Hugging Face Space (Gradio SDK): the model and the index come from Hub repos.

Settings (Space variables, or environment variables when run locally):

- `AVIGATE_MODEL`: model repo id or local folder (default: the model recorded in the index);
- `AVIGATE_INDEX`: dataset repo id or local folder holding `index/` (written by `avigate index`) and `videos/` (the
  indexed files, in the layout they had below their common folder when indexed);
- `AVIGATE_REVISION`: optional revision of both repos.

    AVIGATE_INDEX=user/my-videos-index python examples/app.py       # http://127.0.0.1:7860
    # on a Space: the same file as app.py, with requirements.txt (see docs/serve.md)

The Space serves only the files of the index, like the command line.
"""

import os

from huggingface_hub import snapshot_download

from modeling_avigate import AvigateModel, AvigateProcessor
from modeling_avigate.search import VideoIndex
from modeling_avigate.serve.app import bind, create_app, run
from modeling_avigate.serve.search_page import relocate_videos


def local_folder(name: str, repo_type: str, revision: str | None) -> str:
    """`name` itself when it is a folder on this machine, else a download of the Hub repo `name`."""
    if os.path.isdir(name):
        return name
    return snapshot_download(name, repo_type=repo_type, revision=revision)


def load_app():
    """The page's FastAPI app for the configured model and index."""
    revision = os.environ.get("AVIGATE_REVISION")
    index_root = local_folder(os.environ["AVIGATE_INDEX"], "dataset", revision)
    index_dir = os.path.join(index_root, "index")
    model_name = os.environ.get("AVIGATE_MODEL") or VideoIndex.read_metadata(index_dir)["model"]["name_or_path"]
    model_dir = local_folder(model_name, "model", revision)
    model = AvigateModel.from_pretrained(model_dir).eval()
    processor = AvigateProcessor.from_pretrained(model_dir)
    index = VideoIndex.load(index_dir, model=model, processor=processor)
    relocate_videos(index, os.path.join(index_root, "videos"))
    return create_app(index, share_nothing=True)


if __name__ == "__main__":
    # Spaces route public traffic to port 7860 of the container, so bind every interface there; locally use
    # AVIGATE_HOST=127.0.0.1 (the default when not on a Space).
    on_space = "SPACE_ID" in os.environ
    app = load_app()
    run(app, bind(os.environ.get("AVIGATE_HOST", "0.0.0.0" if on_space else "127.0.0.1"),
                  int(os.environ.get("PORT", 7860))))
