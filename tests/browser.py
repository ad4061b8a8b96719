"""Drive the search page in a real browser: Debian's Chromium through Playwright (no browser download), against a
server started on a free local port for the duration of a `with` block.

Used by `tests/serve/test_serve.py` and by `tests/scripts/page_screenshot.py` (the README's screenshot).
"""

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn


CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Chromium refuses to run as root inside its sandbox (CI runs as root); headless video may autoplay unmuted.
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]


def chromium_path() -> str | None:
    """The system Chromium (Debian package `chromium`), or `None` when it is not installed."""
    for candidate in (os.environ.get("AVIGATE_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(app, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL; stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on port {port} within {timeout:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout)


@dataclass
class PageVisit:
    """What the browser saw."""

    result_names: list[str]
    message: str
    player_name: str
    gate_text: str
    start_time: float
    played_time: float
    player_in_view: bool
    footer: str
    similar_names: list[str]
    similar_message: str
    player_after_new_query: str
    typed_query_message: str
    typed_query_markup: int
    requested_hosts: set[str]


def search_and_play(url: str, query: str, screenshot: str | os.PathLike, timeout_s: float = 60.0,
                    viewport: tuple[int, int] = (1280, 900), typed_query: str = "**bold** <img src=x> red") -> PageVisit:
    """Open the page, search for `query`, click the last result of the page, wait until its video plays
    (`currentTime` advances), save a screenshot, then ask for "more like this", then search for `typed_query` (text
    that Markdown or HTML would format); report what was shown. Every wait is bounded by `timeout_s`."""
    from urllib.parse import urlparse

    from playwright.sync_api import sync_playwright

    timeout_ms = timeout_s * 1000
    hosts: set[str] = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(timeout_ms)
            page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
            page.goto(url)
            box = page.locator("#avigate-query textarea, #avigate-query input").first
            box.fill(query)
            page.locator("#avigate-search").click()
            cards = page.locator("#avigate-results .avigate-card")
            cards.first.wait_for()
            # Every poster has loaded before the screenshot.
            page.wait_for_function("() => [...document.querySelectorAll('#avigate-results img')]"
                                   ".every(image => image.complete)")
            names = [name.split(" ", 1)[1] for name in cards.locator(".avigate-name").all_inner_texts()]
            message = page.locator("#avigate-message").inner_text()
            # The last card: on a narrow screen the one farthest from where the player is laid out.
            cards.last.scroll_into_view_if_needed()
            cards.last.click()
            video = page.locator("#avigate-player video")
            video.wait_for()
            # It plays from where the page asked: the browser's played range (a best frame near the end of a
            # short clip may play to the end before any check runs).
            page.wait_for_function("() => { const v = document.querySelector('#avigate-player video');"
                                   " return v && v.played.length > 0 && v.played.end(0) > v.played.start(0) + 0.02; }")
            start, played = video.evaluate("v => [v.played.start(0), v.played.end(0)]")
            in_view = bool(video.evaluate("v => { const box = v.getBoundingClientRect(); return box.height > 0 && "
                                          "box.top >= 0 && box.bottom <= window.innerHeight; }"))
            player_name = page.locator("#avigate-player .avigate-name").inner_text().split(" ", 1)[1]
            gate = page.locator("#avigate-player .avigate-gate").inner_text()
            footer = page.locator("#avigate-footer").inner_text()
            page.screenshot(path=os.fspath(screenshot), full_page=False)
            # "More like this": the grid is replaced by the clicked clip's neighbours, without the clip itself.
            selected = page.locator("#avigate-player .avigate-player").get_attribute("data-position")
            page.locator("#avigate-similar").click()
            page.wait_for_function("position => { const cards = document.querySelectorAll('#avigate-results "
                                   ".avigate-card'); return cards.length > 0 && [...cards].every(card => "
                                   "card.dataset.position !== position); }", arg=selected)
            similar = [name.split(" ", 1)[1] for name in cards.locator(".avigate-name").all_inner_texts()]
            similar_message = page.locator("#avigate-message").inner_text()
            # A new query: the player is emptied, and the query is shown as the text typed.
            box.fill(typed_query)
            page.locator("#avigate-search").click()
            page.wait_for_function("() => document.querySelector('#avigate-message').innerText.includes('Results')")
            player_after = page.locator("#avigate-player").inner_text().strip()
            typed_message = page.locator("#avigate-message").inner_text()
            markup = page.locator("#avigate-message img, #avigate-message strong, #avigate-message b").count()
        finally:
            browser.close()
    return PageVisit(names, message, player_name, gate, start, played, in_view, footer, similar, similar_message,
                     player_after, typed_message, markup, hosts)
