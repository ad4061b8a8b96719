# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""`avigate serve`: a search page (Gradio) over a [`VideoIndex`](modeling_avigate.index.VideoIndex).

`previews` (poster frames, frame times, gates stored in the index) needs only the core dependencies; the page itself
(`modeling_avigate.serve.app`) needs the `serve` extra (`pip install 'modeling-avigate[serve]'`).
"""
