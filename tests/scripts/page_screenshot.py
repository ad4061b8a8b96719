"""Screenshot of the search page over an index, taken by the browser test's own driver (`tests/browser.py`): start the
server on a free port, search, click the first result, wait until it plays, save a PNG.

    python tests/scripts/page_screenshot.py outputs/demo/index "a red circle moves left with a high beep" \
        docs/images/search-page.png
"""

import argparse
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from browser import search_and_play, serving  # noqa: E402

from modeling_avigate import AvigateModel, AvigateProcessor  # noqa: E402
from modeling_avigate.search import VideoIndex  # noqa: E402
from modeling_avigate.serve.app import create_app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index")
    parser.add_argument("query")
    parser.add_argument("output", help="PNG to write")
    parser.add_argument("--model", help="default: the model recorded in the index")
    parser.add_argument("--page-size", type=int, default=8)
    args = parser.parse_args()
    model_name = args.model or VideoIndex.read_metadata(args.index)["model"]["name_or_path"]
    model = AvigateModel.from_pretrained(model_name).eval()
    index = VideoIndex.load(args.index, model=model, processor=AvigateProcessor.from_pretrained(model_name))
    with serving(create_app(index, page_size=args.page_size, share_nothing=True)) as url:
        visit = search_and_play(url, args.query, args.output, timeout_s=120)
    print(f"{args.output}: first result {visit.player_name}, {visit.gate_text}; {visit.footer}")


if __name__ == "__main__":
    main()
