# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""The search page: a Gradio app over a [`SearchPage`], mounted on a FastAPI app that also serves the indexed videos
(with HTTP range requests, so a browser can seek without loading a large file whole) and their poster frames.

Both file routes take a video's *position* in the index, never a path, so the server can read nothing but the files
the index lists. Of what Gradio and FastAPI serve by default, only the requests the page makes are answered (no
upload route, no API documentation); queries run concurrently. `avigate serve INDEX` runs it locally (127.0.0.1 by
default); `examples/app.py` runs the same app as a Hugging Face Space.

Example:

```python
>>> from modeling_avigate.search import VideoIndex
>>> from modeling_avigate.serve.app import create_app, run
>>> index = VideoIndex.load("my_videos.avigate", model=model, processor=processor)  # doctest: +SKIP
>>> run(create_app(index), bind("127.0.0.1", 7860))  # doctest: +SKIP
```
"""

import html
import os
import re
import socket

import gradio as gr
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse, Response

from ..search import VideoIndex
from .search_page import PAGE_SIZE, Hit, ResultPage, SearchPage


TITLE = "AVIGATE video search"
# Every request the page makes (method and path); everything else Gradio and FastAPI would serve (file uploads,
# Gradio's file and API-info routes, FastAPI's /docs, /redoc and /openapi.json, monitoring, login) is absent.
PAGE_REQUESTS = {
    r"/": ("GET", "HEAD"),
    r"/config/?": ("GET",),
    r"/theme\.css": ("GET",),
    r"/favicon\.ico": ("GET",),
    r"/(assets|static)/[^?#]+": ("GET",),  # the page's scripts, styles and fonts, from Gradio's package
    r"/gradio_api/queue/join": ("POST",),  # a query, a page turn, a click, "more like this"
    r"/gradio_api/queue/data": ("GET",),  # their answers, as server-sent events
    r"/gradio_api/heartbeat/[^/]+": ("GET",),
    r"/media/(video|poster)/[^/]+": ("GET",),
}
# The page's calls carry a query and a little state; nothing it sends is larger.
MAX_BODY_BYTES = 64 * 1024
# Queries at once: Gradio's default (1) queues every visitor behind the others, although a search only reads the
# index; more than this adds no throughput on a few cores (see docs/serve.md).
CONCURRENCY = 8
# Event delegation on the components' roots survives every re-render of their HTML: a card plays its clip, a pager
# button turns the page, the player's button asks for "more like this".
PICK_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('[data-position], [data-step]');
  if (!target || target.disabled) return;
  trigger('click', target.dataset.step ? {step: Number(target.dataset.step)} : {position: Number(target.dataset.position)});
});
"""
SIMILAR_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('[data-similar]');
  if (button) trigger('click', {position: Number(button.dataset.similar)});
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
.avigate-unknown { color: #b54708; }
.avigate-pager { display: flex; gap: 12px; margin-top: 12px; }
.avigate-button { padding: 6px 14px; border: 1px solid #d0d4dc; border-radius: 8px; background: white; font: inherit;
  color: inherit; cursor: pointer; }
.avigate-button:hover:enabled { border-color: #ff7c00; }
.avigate-button:disabled { opacity: 0.5; cursor: default; }
/* Narrow screens stack the columns: the player goes first and stays in view while the grid scrolls under it. */
/* Gradio's 'overflow: hidden' would make its container the sticky player's scroll box; 'clip' cuts the same. */
.gradio-container { overflow: clip !important; }
@media (max-width: 720px) {
  #avigate-main { flex-direction: column; }
  #avigate-player-column { order: -1; position: sticky; top: 0; z-index: 10;
    background: var(--background-fill-primary); padding-bottom: 6px; }
  .avigate-player video { max-height: 32vh; }
}
"""
# System fonts, so the page requests nothing from a font CDN.
LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO_FONTS = ["ui-monospace", "monospace"]


# ---------------------------------------------------------------------------------------------------------------
# HTML of the result grid, the player and the footer (every indexed string is escaped).
# ---------------------------------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "duration unknown" if value is None else f"{value:.1f} s"


def clock(seconds: float) -> str:
    """`m:ss.s`, the way a player shows a position."""
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def span_text(hit: Hit) -> str:
    """The segment's time range in its file and the file's duration (only the duration for an unsegmented entry)."""
    if hit.start is None or hit.end is None:
        return _seconds(hit.duration)
    return f"{clock(hit.start)}–{clock(hit.end)} of {_seconds(hit.duration)}"


def gate_text(hit: Hit) -> str:
    """How the clip's sound entered its embedding: the mean |gate| over fusion layers, or why there is none."""
    if not hit.has_audio:
        return "no sound track"
    if hit.audio_gate is None:
        return "audio gate not recorded (rebuild the index to record it)"
    return f"audio gate {hit.audio_gate:.3f}"


def render_card(hit: Hit) -> str:
    """One result tile: poster, rank, file name, time range, score with its global and local parts, audio gate."""
    missing = '<div class="avigate-missing">file missing</div>' if hit.missing else ""
    poster = (f'<img src="media/poster/{hit.position}" alt="poster of {html.escape(hit.file_name)}">'
              if hit.has_poster else '<div class="avigate-noposter"></div>')
    return (
        f'<button class="avigate-card" data-position="{hit.position}" data-rank="{hit.rank}" type="button">{poster}'
        f'<div class="avigate-meta"><div class="avigate-name">#{hit.rank} {html.escape(hit.file_name)}</div>'
        f'<div class="avigate-span">{span_text(hit)}</div>'
        f'<div class="avigate-score">score {hit.score:.2f} = (global {hit.global_score:.2f} + local '
        f"{hit.local_score:.2f}) / 2</div>"
        f'<div class="avigate-gate">{html.escape(gate_text(hit))}</div>{missing}</div></button>'
    )


def render_results(result: ResultPage) -> str:
    """The result grid of one page and its previous/next buttons (nothing when there is a message instead)."""
    if not result.hits:
        return ""
    previous = "" if result.page > 0 else " disabled"
    following = "" if result.has_next else " disabled"
    return (f'<div class="avigate-grid">{"".join(render_card(hit) for hit in result.hits)}</div>'
            f'<div class="avigate-pager"><button type="button" class="avigate-button" id="avigate-previous" '
            f'data-step="-1"{previous}>← Previous page</button><button type="button" class="avigate-button" '
            f'id="avigate-next" data-step="1"{following}>Next page →</button></div>')


def render_player(hit: Hit) -> str:
    """The clip, starting at the frame that scored best for the query, with its score and per-layer gates."""
    details = gate_text(hit)
    if hit.has_audio and hit.audio_gate_per_layer:
        details += " (per layer: " + ", ".join(f"{gate:+.3f}" for gate in hit.audio_gate_per_layer) + ")"
    name = html.escape(hit.file_name)
    if hit.missing:
        return (f'<div class="avigate-player" data-position="{hit.position}"><p class="avigate-missing">{name} was '
                "moved or deleted since it was indexed; re-index its folder to search it again.</p></div>")
    start = hit.best_frame_time if hit.best_frame_time is not None else hit.start or 0.0
    # A segment plays from its best frame to its end (the media fragment `#t=from,to`); the controls go on from there.
    fragment = f"{start:.3f}" if hit.end is None else f"{start:.3f},{hit.end:.3f}"
    return (
        f'<div class="avigate-player" data-position="{hit.position}">'
        f'<video src="media/video/{hit.position}#t={fragment}" controls autoplay playsinline preload="auto"></video>'
        f'<div class="avigate-meta"><div class="avigate-name">#{hit.rank} {name}</div>'
        f"<div>starts at {start:.2f} s, the frame that matched best · {span_text(hit)}</div>"
        f"<div>score {hit.score:.2f} = (global {hit.global_score:.2f} + local {hit.local_score:.2f}) / 2</div>"
        f'<div class="avigate-gate">{html.escape(details)}</div></div>'
        f'<button type="button" class="avigate-button" id="avigate-similar" data-similar="{hit.position}">More like '
        "this</button></div>"
    )


def render_message(result: ResultPage, page_size: int) -> str:
    """What the results are and which page, the query words the model does not know, or why there are no results.
    Every part is escaped: the page shows the query as the user typed it, never as markup."""
    if not result.hits:
        return f'<p class="avigate-note">{html.escape(result.message)}</p>'
    first = result.page * page_size + 1
    text = (f'<p><span class="avigate-title">{html.escape(result.title)}</span> · page {result.page + 1}, results '
            f"{first}–{first + len(result.hits) - 1}</p>")
    if result.unknown_words:
        words = ", ".join(f"“{word}”" for word in result.unknown_words)
        text += (f'<p class="avigate-unknown">Not in the model\'s vocabulary, so they do not steer the results: '
                 f"{html.escape(words)}</p>")
    return text


def render_footer(result: ResultPage, index: VideoIndex) -> str:
    """Server time of the last request and what the index holds."""
    parts = [f"{len(index)} videos"]
    if result.server_ms:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings.items())
        parts.insert(0, f"server time {result.server_ms:.1f} ms ({timings})")
    stage = (index.info.get("first_stage") or {}).get("kind")
    parts.append(f"two-stage search ({stage} first stage)" if stage else "exact scan")
    return f"<p>{html.escape(' · '.join(parts))}</p>"


# ---------------------------------------------------------------------------------------------------------------
# The Gradio page.
# ---------------------------------------------------------------------------------------------------------------


def _page_outputs(page: SearchPage, result: ResultPage, state: dict) -> tuple:
    state = {**state, "page": result.page, "hits": {hit.position: hit for hit in result.hits}}
    return (render_results(result), render_message(result, page.page_size), render_footer(result, page.index),
            state)


def build_blocks(page: SearchPage, share_nothing: bool = False) -> gr.Blocks:
    """The page: query box, result grid with its pager, player with "more like this", footer with the server time.

    Everything an event changes is HTML rendered here (buttons included), so an event costs Gradio no component
    updates."""
    with gr.Blocks(title=TITLE, analytics_enabled=not share_nothing) as blocks:
        state = gr.State({})
        gr.Markdown(f"## {TITLE}\nSearch {len(page.index)} videos by what they show and sound like. Click a result to "
                    "play it from the frame that matched best.")
        with gr.Row(equal_height=True):
            query = gr.Textbox(show_label=False, placeholder="a dog barks at a car", scale=5, elem_id="avigate-query")
            search = gr.Button("Search", variant="primary", scale=1, elem_id="avigate-search")
        message = gr.HTML(elem_id="avigate-message")
        with gr.Row(elem_id="avigate-main"):
            with gr.Column(scale=3, elem_id="avigate-results-column"):
                results = gr.HTML(elem_id="avigate-results", js_on_load=PICK_JS)
            with gr.Column(scale=2, elem_id="avigate-player-column"):
                player = gr.HTML(elem_id="avigate-player", js_on_load=SIMILAR_JS)
        footer = gr.HTML(render_footer(ResultPage(), page.index), elem_id="avigate-footer")
        page_outputs = [results, message, footer, state]

        def run_query(text: str):
            # A new ranking empties the player: its clip, score and "more like this" belonged to the previous one.
            return (*_page_outputs(page, page.query(text), {"mode": "text", "query": text}), "")

        def turn_page(step: int, state: dict):
            number = max(0, state.get("page", 0) + step)
            if state.get("mode") == "similar":
                return _page_outputs(page, page.more_like_this(state["source"], number), state)
            return _page_outputs(page, page.query(state.get("query", ""), number), state)

        def click_results(state: dict, event: gr.EventData):
            step = getattr(event, "step", None)
            if step is not None:
                return (*turn_page(int(step), state), gr.skip())
            hit = state.get("hits", {}).get(getattr(event, "position", None))
            outputs = (gr.skip(), gr.skip(), gr.skip())
            return (*outputs, state, "") if hit is None else (*outputs, state, render_player(hit))

        def like_this(event: gr.EventData):
            source = int(getattr(event, "position", -1))
            return _page_outputs(page, page.more_like_this(source), {"mode": "similar", "source": source})

        search.click(run_query, [query], [*page_outputs, player])
        query.submit(run_query, [query], [*page_outputs, player])
        results.click(click_results, [state], [*page_outputs, player])
        player.click(like_this, None, page_outputs)
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# The server: only the page's requests, the file routes, the page.
# ---------------------------------------------------------------------------------------------------------------


class PageRequestsOnly:
    """ASGI middleware in front of the whole server: a request the page does not make ([`PAGE_REQUESTS`]) answers
    404, a wrong method on one it makes 405, a body over `MAX_BODY_BYTES` 413 (411 without a length); websockets are
    refused. The rest goes on to `app`."""

    def __init__(self, app):
        self.app = app
        self.routes = [(re.compile(pattern), methods) for pattern, methods in PAGE_REQUESTS.items()]

    def refusal(self, scope: dict) -> Response | None:
        methods = next((methods for pattern, methods in self.routes if pattern.fullmatch(scope["path"])), None)
        if methods is None:
            return PlainTextResponse("Not Found", status_code=404)
        if scope["method"] not in methods:
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": ", ".join(methods)})
        if scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            if length is None or not length.isdigit():
                return PlainTextResponse("Length Required", status_code=411)
            if int(length) > MAX_BODY_BYTES:
                return PlainTextResponse("Content Too Large", status_code=413)
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        refusal = self.refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)


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


def create_app(index: VideoIndex, page_size: int = PAGE_SIZE, share_nothing: bool = False,
               concurrency: int | None = CONCURRENCY) -> FastAPI:
    """The whole server for `index` (with its model attached for text queries).

    Args:
        index: the gallery.
        page_size: results per page.
        share_nothing: no usage analytics and no fonts from a CDN, so the page and the server contact nothing but
            this server (default: Gradio's own defaults).
        concurrency: requests answered at once (`None`: no limit; 1 is Gradio's default queue).
    """
    page = SearchPage(index, page_size)
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    add_media_routes(app, page)
    theme = gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS) if share_nothing else None
    blocks = build_blocks(page, share_nothing).queue(default_concurrency_limit=concurrency)
    app = gr.mount_gradio_app(app, blocks, path="/", css=CSS, theme=theme, ssr_mode=False, footer_links=[])
    app.add_middleware(PageRequestsOnly)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port`, made before the server starts so that a port in use fails here with one
    clear `OSError`, not after the page was announced."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from error


def run(app: FastAPI, listener: socket.socket) -> None:
    """Serve `app` on `listener` (see [`bind`]) until interrupted."""
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
