# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate serve`: a search page (Gradio) over a [`VideoIndex`](modeling_avigate.search.VideoIndex).

What the page shows besides scores (poster frames, frame times, gates) is stored in the index itself
(`modeling_avigate.search.previews`, core dependencies only); `search_page` ranks and explains results (core
dependencies only); the page itself (`modeling_avigate.serve.app`) needs the `serve` extra
(`pip install 'modeling-avigate[serve]'`).
"""
