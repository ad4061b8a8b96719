"""Drive the search page in a real browser: Debian's Chromium through Playwright (no browser download), against a
server started on a free local port for the duration of a `with` block.

Used by `tests/test_serve.py` and by `tests/scripts/page_screenshot.py` (the README's screenshot).
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
    player_name: str
    gate_text: str
    start_time: float
    played_time: float
    footer: str
    similar_names: list[str]
    requested_hosts: set[str]


def search_and_play(url: str, query: str, screenshot: str | os.PathLike, timeout_s: float = 60.0,
                    viewport: tuple[int, int] = (1280, 900)) -> PageVisit:
    """Open the page, search for `query`, click the first result, wait until its video plays (`currentTime`
    advances), save a screenshot, then ask for "more like this"; report what was shown. Every wait is bounded by
    `timeout_s`."""
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
            page.locator("#avigate-query textarea, #avigate-query input").first.fill(query)
            page.locator("#avigate-search").click()
            cards = page.locator("#avigate-results .avigate-card")
            cards.first.wait_for()
            # Every poster has loaded before the screenshot.
            page.wait_for_function("() => [...document.querySelectorAll('#avigate-results img')]"
                                   ".every(image => image.complete)")
            names = [name.split(" ", 1)[1] for name in cards.locator(".avigate-name").all_inner_texts()]
            cards.first.click()
            video = page.locator("#avigate-player video")
            video.wait_for()
            start = float(video.evaluate("v => new Promise(resolve => v.readyState >= 1 ? resolve(v.currentTime) : "
                                         "v.addEventListener('loadedmetadata', () => resolve(v.currentTime)))"))
            page.wait_for_function("start => { const v = document.querySelector('#avigate-player video');"
                                   " return v && !v.paused && v.currentTime > start + 0.1; }", arg=start)
            played = float(video.evaluate("v => v.currentTime"))
            player_name = page.locator("#avigate-player .avigate-name").inner_text().split(" ", 1)[1]
            gate = page.locator("#avigate-player .avigate-gate").inner_text()
            footer = page.locator("#avigate-footer").inner_text()
            page.screenshot(path=os.fspath(screenshot), full_page=True)
            # "More like this": the grid is replaced by the clicked clip's neighbours, without the clip itself.
            selected = page.locator("#avigate-player .avigate-player").get_attribute("data-position")
            page.locator("#avigate-similar").click()
            page.wait_for_function("position => { const cards = document.querySelectorAll('#avigate-results "
                                   ".avigate-card'); return cards.length > 0 && [...cards].every(card => "
                                   "card.dataset.position !== position); }", arg=selected)
            similar = [name.split(" ", 1)[1] for name in cards.locator(".avigate-name").all_inner_texts()]
        finally:
            browser.close()
    return PageVisit(names, player_name, gate, start, played, footer, similar, hosts)
