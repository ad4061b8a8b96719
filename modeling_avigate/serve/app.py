# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The search page: a Gradio app over a [`SearchPage`], mounted on a FastAPI app that also serves the indexed videos
(with HTTP range requests, so a browser can seek without loading a large file whole) and their poster frames.

Both file routes take a video's *position* in the index, never a path, so the server can read nothing but the files
the index lists. `avigate serve INDEX` runs it locally (127.0.0.1 by default); `examples/app.py` runs the same app as a
Hugging Face Space.

Example:

```python
>>> from modeling_avigate.search import VideoIndex
>>> from modeling_avigate.serve.app import create_app, run
>>> index = VideoIndex.load("my_videos.avigate", model=model, processor=processor)  # doctest: +SKIP
>>> run(create_app(index), host="127.0.0.1", port=7860)  # doctest: +SKIP
```
"""

import html
import os

import gradio as gr
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response

from ..search import VideoIndex
from .search_page import PAGE_SIZE, Hit, ResultPage, SearchPage


TITLE = "AVIGATE video search"
# Event delegation on the component's root survives every re-render of the result grid.
PICK_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('[data-position]');
  if (card) trigger('click', {position: Number(card.dataset.position)});
});
"""
CSS = """
.avigate-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.avigate-card { display: block; text-align: left; padding: 0; border: 1px solid #d0d4dc; border-radius: 8px;
  background: white; cursor: pointer; overflow: hidden; font: inherit; color: inherit; }
.avigate-card:hover, .avigate-card:focus { border-color: #ff7c00; outline: none; }
.avigate-card img, .avigate-card .avigate-noposter { width: 100%; aspect-ratio: 4 / 3; object-fit: cover;
  background: #eef0f4; display: block; }
.avigate-meta { padding: 6px 8px; font-size: 13px; line-height: 1.45; }
.avigate-meta .avigate-name { font-weight: 600; overflow-wrap: anywhere; }
.avigate-missing { color: #b42318; font-weight: 600; }
.avigate-player video { width: 100%; max-height: 420px; background: black; border-radius: 8px; }
.avigate-player .avigate-meta { font-size: 14px; }
"""
# System fonts, so the page requests nothing from a font CDN.
LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO_FONTS = ["ui-monospace", "monospace"]


# ---------------------------------------------------------------------------------------------------------------
# HTML of the result grid, the player and the footer (every indexed string is escaped).
# ---------------------------------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "duration unknown" if value is None else f"{value:.1f} s"


def gate_text(hit: Hit) -> str:
    """How the clip's sound entered its embedding: the mean |gate| over fusion layers, or why there is none."""
    if not hit.has_audio:
        return "no sound track"
    if hit.audio_gate is None:
        return "audio gate not recorded (rebuild the index to record it)"
    return f"audio gate {hit.audio_gate:.3f}"


def render_card(hit: Hit) -> str:
    """One result tile: poster, rank, file name, duration, score with its global and local parts, audio gate."""
    missing = '<div class="avigate-missing">file missing</div>' if hit.missing else ""
    poster = (f'<img src="media/poster/{hit.position}" alt="poster of {html.escape(hit.file_name)}">'
              if hit.has_poster else '<div class="avigate-noposter"></div>')
    return (
        f'<button class="avigate-card" data-position="{hit.position}" data-rank="{hit.rank}" type="button">{poster}'
        f'<div class="avigate-meta"><div class="avigate-name">#{hit.rank} {html.escape(hit.file_name)}</div>'
        f"<div>{_seconds(hit.duration)}</div>"
        f'<div class="avigate-score">score {hit.score:.2f} = (global {hit.global_score:.2f} + local '
        f"{hit.local_score:.2f}) / 2</div>"
        f'<div class="avigate-gate">{html.escape(gate_text(hit))}</div>{missing}</div></button>'
    )


def render_results(result: ResultPage) -> str:
    """The result grid of one page (empty when there is a message instead)."""
    return f'<div class="avigate-grid">{"".join(render_card(hit) for hit in result.hits)}</div>'


def render_player(hit: Hit) -> str:
    """The clip, starting at the frame that scored best for the query, with its score and per-layer gates."""
    details = gate_text(hit)
    if hit.has_audio and hit.audio_gate_per_layer:
        details += " (per layer: " + ", ".join(f"{gate:+.3f}" for gate in hit.audio_gate_per_layer) + ")"
    name = html.escape(hit.file_name)
    if hit.missing:
        return (f'<div class="avigate-player"><p class="avigate-missing">{name} was moved or deleted since it was '
                "indexed; re-index its folder to search it again.</p></div>")
    start = hit.best_frame_time or 0.0
    return (
        f'<div class="avigate-player" data-position="{hit.position}">'
        f'<video src="media/video/{hit.position}#t={start:.3f}" controls autoplay playsinline preload="auto"></video>'
        f'<div class="avigate-meta"><div class="avigate-name">#{hit.rank} {name}</div>'
        f"<div>starts at {start:.2f} s, the frame that matched best · {_seconds(hit.duration)}</div>"
        f"<div>score {hit.score:.2f} = (global {hit.global_score:.2f} + local {hit.local_score:.2f}) / 2</div>"
        f'<div class="avigate-gate">{html.escape(details)}</div></div></div>'
    )


def render_footer(result: ResultPage, index: VideoIndex) -> str:
    """Server time of the last request and what the index holds."""
    parts = [f"{len(index)} videos"]
    if result.server_ms:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings.items())
        parts.insert(0, f"server time {result.server_ms:.1f} ms ({timings})")
    stage = (index.info.get("first_stage") or {}).get("kind")
    parts.append(f"two-stage search ({stage} first stage)" if stage else "exact scan")
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# The Gradio page.
# ---------------------------------------------------------------------------------------------------------------


def _page_outputs(page: SearchPage, result: ResultPage, state: dict) -> tuple:
    state = {**state, "page": result.page, "hits": {hit.position: hit for hit in result.hits}}
    message = result.message or f"Page {result.page + 1}: results {result.page * page.page_size + 1}–" \
                                f"{result.page * page.page_size + len(result.hits)}"
    return (render_results(result), message, render_footer(result, page.index),
            gr.update(interactive=result.page > 0), gr.update(interactive=result.has_next), state)


def build_blocks(page: SearchPage, share_nothing: bool = False) -> gr.Blocks:
    """The page: query box, result grid, player with "more like this", paging, footer with the server time."""
    with gr.Blocks(title=TITLE, analytics_enabled=not share_nothing) as blocks:
        state = gr.State({})
        gr.Markdown(f"## {TITLE}\nSearch {len(page.index)} videos by what they show and sound like. Click a result to "
                    "play it from the frame that matched best.")
        with gr.Row(equal_height=True):
            query = gr.Textbox(show_label=False, placeholder="a dog barks at a car", scale=5, elem_id="avigate-query")
            search = gr.Button("Search", variant="primary", scale=1, elem_id="avigate-search")
        message = gr.Markdown(elem_id="avigate-message")
        with gr.Row():
            with gr.Column(scale=3):
                results = gr.HTML(elem_id="avigate-results", js_on_load=PICK_JS)
                with gr.Row():
                    previous = gr.Button("← Previous page", interactive=False, elem_id="avigate-previous")
                    following = gr.Button("Next page →", interactive=False, elem_id="avigate-next")
            with gr.Column(scale=2):
                player = gr.HTML(elem_id="avigate-player", js_on_load=None)
                similar = gr.Button("More like this", interactive=False, elem_id="avigate-similar")
        footer = gr.Markdown(render_footer(ResultPage(), page.index), elem_id="avigate-footer")
        page_outputs = [results, message, footer, previous, following, state]

        def run_query(text: str, state: dict):
            return _page_outputs(page, page.query(text), {**state, "mode": "text", "query": text})

        def turn_page(step: int, state: dict):
            number = max(0, state.get("page", 0) + step)
            if state.get("mode") == "similar":
                return _page_outputs(page, page.more_like_this(state["source"], number), state)
            return _page_outputs(page, page.query(state.get("query", ""), number), state)

        def like_this(state: dict):
            source = state.get("selected", -1)
            return _page_outputs(page, page.more_like_this(source), {**state, "mode": "similar", "source": source})

        def pick(state: dict, event: gr.EventData):
            hit = state.get("hits", {}).get(event.position)
            if hit is None:
                return "", gr.update(interactive=False), state
            return render_player(hit), gr.update(interactive=True), {**state, "selected": hit.position}

        search.click(run_query, [query, state], page_outputs)
        query.submit(run_query, [query, state], page_outputs)
        previous.click(lambda state: turn_page(-1, state), [state], page_outputs)
        following.click(lambda state: turn_page(1, state), [state], page_outputs)
        similar.click(like_this, [state], page_outputs)
        results.click(pick, [state], [player, similar, state])
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# The server: file routes + the page.
# ---------------------------------------------------------------------------------------------------------------


def add_media_routes(app: FastAPI, page: SearchPage) -> None:
    """`GET media/video/{position}` (the indexed file, range requests answered with 206) and
    `GET media/poster/{position}` (the stored JPEG). Positions outside the index, moved files and videos without a
    poster answer 404 with a one-line reason."""

    @app.get("/media/video/{position}")
    def video(position: int) -> FileResponse:
        try:
            path = page.video_file(position)
        except (LookupError, FileNotFoundError) as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
        return FileResponse(path, filename=os.path.basename(path), content_disposition_type="inline")

    @app.get("/media/poster/{position}")
    def poster(position: int) -> Response:
        if not 0 <= position < len(page.index) or not page.index.previews.poster(position):
            raise HTTPException(status_code=404, detail=f"no poster for video number {position}")
        return Response(page.index.previews.poster(position), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})


def create_app(index: VideoIndex, page_size: int = PAGE_SIZE, share_nothing: bool = False) -> FastAPI:
    """The whole server for `index` (with its model attached for text queries).

    Args:
        index: the gallery.
        page_size: results per page.
        share_nothing: no usage analytics and no fonts from a CDN, so the page and the server contact nothing but
            this server (default: Gradio's own defaults).
    """
    page = SearchPage(index, page_size)
    app = FastAPI(title=TITLE)
    add_media_routes(app, page)
    theme = gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS) if share_nothing else None
    return gr.mount_gradio_app(app, build_blocks(page, share_nothing), path="/", css=CSS, theme=theme,
                               ssr_mode=False, footer_links=[])


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve `app` until interrupted (localhost only unless `host` says otherwise)."""
    uvicorn.run(app, host=host, port=port, log_level="warning")
