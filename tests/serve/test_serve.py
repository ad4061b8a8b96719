"""`avigate serve`: previews stored in the index (posters, frame times, gates), the explained ranking behind the
page, the file routes (range requests, nothing outside the index) and the page itself in a real browser."""

import copy
import dataclasses
import html
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_avigate.embedding import EmbeddingOptions
from modeling_avigate.modeling_avigate import multi_grained_similarity
from modeling_avigate.processors import read_video
from modeling_avigate.search import METADATA_FILE, VideoIndex
from modeling_avigate.search.previews import POSTER_SIZE
from modeling_avigate.serve.search_page import SearchPage, explain_scores, known_words, relocate_videos

from builders import build_gallery, load_script


QUERY = "a dog barks at a car"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    gallery = build_gallery(tmp_path_factory.mktemp("serve"), 7)
    gallery["index"].save(gallery["root"] / "index")
    return gallery


def save_copy(processor, folder) -> None:
    """Save a copy: `save_pretrained` adds `auto_map` to the processor it is called on (a key the index's processor
    check ignores), and the shared fixture's processor stays as the other tests expect it."""
    copy.deepcopy(processor).save_pretrained(folder)


def fresh_copy(built, name: str) -> VideoIndex:
    """A loaded copy of the built index in its own folder (tests that move files or rewrite the index use it)."""
    folder = built["root"] / name
    shutil.copytree(built["root"] / "index", folder)
    return VideoIndex.load(folder, model=built["model"], processor=built["processor"])


# -- previews in the index ----------------------------------------------------------------------------------------


def test_previews_hold_poster_frame_times_and_gates(built):
    index, processor, model = built["index"], built["processor"], built["model"]
    assert len(index.previews) == len(index) == 7
    for position, path in enumerate(index.paths):
        poster = Image.open(io.BytesIO(index.previews.poster(position)))
        assert poster.format == "JPEG" and max(poster.size) <= POSTER_SIZE
        # Frame times: the ones the processor's own decoder reports for the frames it samples.
        decoded = read_video(path, processor.video_processor.num_frames, 32, (32, 32))
        stored = index.previews.frame_times[position]
        np.testing.assert_allclose(stored[: len(decoded.frame_times)].numpy(), decoded.frame_times, atol=1e-6)
        assert torch.isnan(stored[len(decoded.frame_times):]).all()
    # Gates: what the model computes for the same inputs.
    inputs = processor(videos=index.paths, return_tensors="pt")
    with torch.no_grad():
        outputs = model.get_video_features(inputs["pixel_values"], inputs["video_mask"], inputs["input_values"],
                                           inputs["has_audio"])
    torch.testing.assert_close(index.previews.attn_gates, outputs.attn_gates.float(), atol=1e-6, rtol=1e-5)


def test_previews_survive_save_load_and_merge(built):
    loaded = VideoIndex.load(built["root"] / "index")
    assert loaded.previews.posters == built["index"].previews.posters
    torch.testing.assert_close(loaded.previews.frame_times, built["index"].previews.frame_times, equal_nan=True)
    torch.testing.assert_close(loaded.previews.attn_gates, built["index"].previews.attn_gates)
    halves = [VideoIndex(loaded.entries[i::2], loaded.frame_embeds[i::2], loaded.video_mask[i::2],
                         loaded.has_audio[i::2], loaded.info, previews=loaded.previews.select(torch.arange(i, 7, 2)))
              for i in (0, 1)]
    merged = VideoIndex.merge(halves, order=loaded.paths)
    assert merged.previews.posters == loaded.previews.posters
    torch.testing.assert_close(merged.previews.attn_gates, loaded.previews.attn_gates)


# -- the ranking behind the page ------------------------------------------------------------------------------------


def test_explain_scores_parts_add_up_to_the_model_score():
    torch.manual_seed(0)
    frames = torch.nn.functional.normalize(torch.randn(5, 4, 8), dim=-1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    videos = torch.nn.functional.normalize((frames * mask[..., None]).sum(1), dim=-1)
    query = torch.nn.functional.normalize(torch.randn(8), dim=-1)
    global_part, local_part, best = explain_scores(query, videos, frames, mask, 30.0, 0.5)
    total = multi_grained_similarity(query[None], videos, frames, mask, 30.0, 0.5)[0]
    torch.testing.assert_close((global_part + local_part) / 2, total)
    torch.testing.assert_close(global_part, 30.0 * videos @ query)
    cosines = frames @ query
    for video in range(5):
        real = mask[video].nonzero().flatten().tolist()
        assert best[video].item() == max(real, key=lambda frame: cosines[video, frame].item())


def test_known_words(built):
    tokenizer = built["processor"].tokenizer
    assert known_words(tokenizer, "zebra dog xylophone barks") == ["dog", "barks"]
    assert known_words(tokenizer, "zebra xylophone") == []
    assert known_words(tokenizer, "“dog,” ... barks!") == ["“dog,”", "barks!"]  # punctuation is not part of a word


def test_known_words_of_the_demo_vocabulary():
    """The synthetic benchmark's BPE spells `dog` as `do g` and `barks` as `ba r k s`: neither is a word it knows, so
    the placeholder query is mostly unknown to the demo model (it used to count `dog` as known)."""
    from modeling_avigate.data.synthetic import synthetic_tokenizer

    tokenizer = synthetic_tokenizer()
    assert [piece.replace("</w>", "") for piece in tokenizer.tokenize("dog")] == ["do", "g"]
    assert known_words(tokenizer, QUERY) == ["a", "a"]
    assert known_words(tokenizer, "a red circle moves left with a high beep") == QUERY_WORDS_DEMO


QUERY_WORDS_DEMO = ["a", "red", "circle", "moves", "left", "with", "a", "high", "beep"]


def test_results_say_what_they_are_and_name_the_unknown_words(built):
    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    page = SearchPage(index, page_size=3)
    result = page.query("a zebra dog barks at a zebra xylophone")
    assert result.title == "Results for “a zebra dog barks at a zebra xylophone”" and len(result.hits) == 3
    assert result.unknown_words == ["zebra", "xylophone"]  # each once, in query order
    assert page.query(QUERY).unknown_words == []
    similar = page.more_like_this(4)
    entry = index.entries[4]
    span = f" {entry['start']:.1f}–{entry['end']:.1f} s" if entry.get("end") is not None else ""
    assert similar.title == f"Clips like {os.path.basename(index.paths[4])}{span}" and similar.unknown_words == []


def test_cards_and_player_show_a_segments_time_range():
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from modeling_avigate.serve.app import render_card, render_player

    frames = torch.nn.functional.normalize(torch.randn(2, 3, 8), dim=-1)
    index = VideoIndex.from_embeddings(["/v/a.mp4", "/v/b.mp4"], frames)
    hit = dataclasses.replace(SearchPage(index).more_like_this(1).hits[0], start=70.0, end=80.0, duration=125.0,
                              best_frame_time=73.5, missing=False)
    assert "1:10.0–1:20.0 of 125.0 s" in render_card(hit)
    player = render_player(hit)
    assert 'src="media/video/0#t=73.500,80.000"' in player  # from the best frame to the segment's end
    assert "starts at 73.50 s, the frame that matched best · 1:10.0–1:20.0 of 125.0 s" in player


def test_query_pages_follow_the_index_ranking(built):
    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    page = SearchPage(index, page_size=3)
    expected = index.search(QUERY, k=7)
    shown = page.query(QUERY).hits + page.query(QUERY, page=1).hits + page.query(QUERY, page=2).hits
    assert [hit.position for hit in shown] == [hit.position for hit in expected]
    assert [hit.rank for hit in shown] == list(range(1, 8))
    np.testing.assert_allclose([hit.score for hit in shown], [hit.score for hit in expected], rtol=1e-6)
    for hit in shown:
        assert abs((hit.global_score + hit.local_score) / 2 - hit.score) < 1e-4
        assert hit.has_audio == bool(index.has_audio[hit.position])
        assert (hit.audio_gate is None) == (not hit.has_audio)
        assert hit.best_frame_time in index.previews.frame_times[hit.position].tolist() and hit.has_poster
        entry = index.entries[hit.position]
        assert (hit.start, hit.end) == (entry["start"], entry["end"]) and hit.start <= hit.best_frame_time
    assert page.query(QUERY, page=1).has_next and not page.query(QUERY, page=2).has_next
    result = page.query(QUERY)
    assert result.server_ms > 0 and set(result.timings) == {"text encoding", "search"}


def test_more_like_this_ranks_by_the_video_embedding_and_leaves_it_out(built):
    index = built["index"]
    page = SearchPage(index, page_size=10)
    hits = page.more_like_this(2).hits
    scores, positions = index.search_embeddings(index.video_embeds[2:3], k=7)
    assert [hit.position for hit in hits] == [p for p in positions[0].tolist() if p != 2]
    assert len(hits) == 6


def test_messages_instead_of_errors(built, tmp_path):
    index = fresh_copy(built, "messages")
    page = SearchPage(index)
    assert "vocabulary" in page.query("zebra xylophone").message
    assert page.query("   ").message.startswith("Type")
    empty = VideoIndex.from_embeddings([], torch.zeros(0, 4, 32))
    assert "empty" in SearchPage(empty).query(QUERY).message
    moved = index.search(QUERY, k=1)[0].path
    shutil.move(moved, tmp_path / "elsewhere.mp4")
    try:
        first = page.query(QUERY).hits[0]
        assert first.missing and first.file_name == os.path.basename(moved)
        with pytest.raises(FileNotFoundError, match="moved or deleted"):
            page.video_file(first.position)
    finally:
        shutil.move(tmp_path / "elsewhere.mp4", moved)


def test_relocate_videos_keeps_paths_inside_the_new_folder(built, tmp_path):
    index = VideoIndex.load(built["root"] / "index")
    shutil.copytree(built["root"] / "videos", tmp_path / "copy")
    relocate_videos(index, tmp_path / "copy")
    assert index.paths == [str(tmp_path / "copy" / os.path.basename(path)) for path in built["paths"]]
    assert all(os.path.isfile(path) for path in index.paths)


# -- the file routes --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(built):
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from fastapi.testclient import TestClient

    from modeling_avigate.serve.app import create_app

    return TestClient(create_app(built["index"], share_nothing=True))


def test_video_route_answers_range_requests(client, built):
    path = built["index"].paths[3]
    content = open(path, "rb").read()
    whole = client.get("/media/video/3")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = client.get("/media/video/3", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(content)}"
    assert part.content == content[100:1100]
    tail = client.get("/media/video/3", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == content[-50:]


@pytest.mark.parametrize("route", ["/media/video/7", "/media/video/-1", "/media/video/..%2F..%2Fetc%2Fpasswd",
                                   "/media/video/%2Fetc%2Fpasswd", "/media/video/1%2F..%2F..%2Fsecret",
                                   "/media/poster/99", "/media/video/?path=/etc/passwd"])
def test_routes_serve_nothing_outside_the_index(client, route):
    response = client.get(route)
    assert response.status_code in (404, 422)
    assert b"root:" not in response.content


def test_gradio_file_route_serves_no_local_file(client, built):
    # Gradio's own file route only serves its cache; the page never hands it a path.
    for path in ("/etc/passwd", built["index"].paths[0], str(built["root"] / "index" / METADATA_FILE)):
        response = client.get(f"/gradio_api/file={path}")
        assert response.status_code in (403, 404) and b"root:" not in response.content


@pytest.mark.parametrize("route", ["/docs", "/redoc", "/openapi.json", "/gradio_api/openapi.json", "/gradio_api/info",
                                   "/gradio_api/upload_progress", "/monitoring", "/gradio_api/file=/etc/passwd",
                                   "/gradio_api/proxy=http://example.com/", "/login", "/manifest.json"])
def test_server_has_no_route_the_page_does_not_use(client, route):
    response = client.get(route)
    assert response.status_code == 404 and response.text == "Not Found"


def test_uploads_are_refused_and_store_nothing(client, tmp_path, monkeypatch):
    import gradio.utils

    upload_folder = gradio.utils.get_upload_folder()
    before = set(os.listdir(upload_folder)) if os.path.isdir(upload_folder) else set()
    response = client.post("/gradio_api/upload", files={"files": ("big.bin", b"x" * 100_000)})
    assert response.status_code == 404
    after = set(os.listdir(upload_folder)) if os.path.isdir(upload_folder) else set()
    assert after == before


@pytest.mark.parametrize("method, route", [("POST", "/media/video/0"), ("PUT", "/media/poster/0"), ("DELETE", "/"),
                                           ("GET", "/gradio_api/queue/join"), ("POST", "/config")])
def test_wrong_methods_answer_405(client, method, route):
    response = client.request(method, route)
    assert response.status_code == 405 and response.headers["allow"]


def test_page_calls_have_a_size_limit(client):
    response = client.post("/gradio_api/queue/join", content=b'{"data": ["' + b"a" * 100_000 + b'"]}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_media_route_serves_only_the_indexed_files(built, tmp_path):
    """An index whose entries were edited to name other files (`VideoIndex.video_file` checks each file against its
    recorded signature) serves none of them, through the page server's route."""
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from fastapi.testclient import TestClient

    from modeling_avigate.serve.app import create_app

    index = fresh_copy(built, "tampered")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    (tmp_path / "clip.mp4").symlink_to(secret)
    index.entries[0] = {**index.entries[0], "path": "/etc/passwd"}  # an index.json edited to list another file
    index.entries[1] = {**index.entries[1], "path": str(secret)}
    index.entries[2] = {**index.entries[2], "path": str(tmp_path / "clip.mp4")}  # a video name, a text file behind
    tampered = TestClient(create_app(index, share_nothing=True))
    for position in (0, 1, 2):
        response = tampered.get(f"/media/video/{position}")
        assert response.status_code == 404 and b"root:" not in response.content
    assert tampered.get("/media/video/3").status_code == 200


def test_queries_run_concurrently(built, monkeypatch):
    """Three queries that can only finish together (each waits for the other two) are all answered: Gradio's default
    queue, one event at a time, would leave the first waiting for ever."""
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    import asyncio
    import threading

    import httpx
    from browser import serving

    from modeling_avigate.serve.app import create_app

    bench_serve = load_script("benchmarks/bench_serve.py")
    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    expected = [hit.file_name for hit in SearchPage(index, page_size=2).query(QUERY).hits]
    together = threading.Barrier(3, timeout=30)
    query = SearchPage.query

    def query_together(self, text: str, page: int = 0):
        together.wait()
        return query(self, text, page)

    monkeypatch.setattr(SearchPage, "query", query_together)

    async def three_visitors(url: str) -> list:
        async with httpx.AsyncClient(timeout=60) as http:
            config = (await http.get(f"{url}config")).json()
            visitors = [bench_serve.PageClient(http, url, config) for _ in range(3)]
            return await asyncio.gather(*(visitor.query(QUERY) for visitor in visitors))

    with serving(create_app(index, page_size=2, share_nothing=True)) as url:
        answers = asyncio.run(three_visitors(url))
    for answer in answers:
        assert all(name in answer[0] for name in expected)


def test_poster_route(client, built):
    response = client.get("/media/poster/4")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == built["index"].previews.poster(4)


def test_page_renders(client):
    response = client.get("/")
    assert response.status_code == 200 and "AVIGATE video search" in response.text


# -- the page in a real browser -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1400, 420])
def test_search_click_and_play_in_chromium(built, tmp_path, width):
    """The page as a user meets it, wide and on a phone-sized screen: results say what they are, the clicked clip
    plays from its best frame and stays in view, "more like this" says whose neighbours it shows, a new query empties
    the player, and a query that looks like markup is shown as typed."""
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    pytest.importorskip("playwright", reason="the browser test needs playwright (test extra)")
    from browser import chromium_path, search_and_play, serving

    if chromium_path() is None:
        pytest.skip("no system Chromium (Debian package 'chromium'; .ci/run installs it)")
    from modeling_avigate.serve.app import create_app

    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    expected = SearchPage(index, page_size=4).query(QUERY).hits
    typed = "**bold** <img src=x> red"
    with serving(create_app(index, page_size=4, share_nothing=True)) as url:
        visit = search_and_play(url, QUERY, tmp_path / "search-page.png", timeout_s=60, viewport=(width, 900),
                                typed_query=typed)
    assert visit.result_names == [hit.file_name for hit in expected]
    assert visit.message.startswith(f"Results for “{QUERY}” · page 1, results 1–4")
    clicked = expected[-1]  # the last card of the page
    assert visit.player_name == clicked.file_name
    assert abs(visit.start_time - clicked.best_frame_time) < 0.05  # starts at the frame that matched best
    assert visit.played_time > visit.start_time
    assert visit.player_in_view  # on a narrow screen too, the clicked clip plays where the user can see it
    assert visit.gate_text.startswith(f"audio gate {clicked.audio_gate:.3f}" if clicked.has_audio else "no sound track")
    assert "server time" in visit.footer
    neighbours = SearchPage(index, page_size=4).more_like_this(clicked.position).hits
    assert visit.similar_names == [hit.file_name for hit in neighbours]
    assert visit.similar_message.startswith(SearchPage(index).more_like_this(clicked.position).title + " · page 1")
    assert visit.player_after_new_query == ""  # the old clip, its score and its "more like this" are gone
    assert f"Results for “{typed}”" in visit.typed_query_message and visit.typed_query_markup == 0
    assert "“**bold**”, “<img”, “src=x>”" in visit.typed_query_message  # named, as typed
    assert visit.requested_hosts == {url.split("/")[2]}  # share-nothing: the page loaded nothing from elsewhere
    assert (tmp_path / "search-page.png").stat().st_size > 10_000


def test_space_app_serves_an_index_and_model_from_folders(built, tmp_path, monkeypatch, client):
    from fastapi.testclient import TestClient

    from modeling_avigate import AvigateModel, AvigateProcessor

    built["model"].save_pretrained(tmp_path / "model")
    save_copy(built["processor"], tmp_path / "model")
    # The index is built by the published model, as a user would before uploading it.
    model = AvigateModel.from_pretrained(tmp_path / "model")
    processor = AvigateProcessor.from_pretrained(tmp_path / "model")
    VideoIndex.build(model, processor, str(built["root"] / "videos"), EmbeddingOptions(progress=False)).save(tmp_path / "repo" / "index")
    shutil.copytree(built["root"] / "videos", tmp_path / "repo" / "videos")  # the Space's copy of the videos
    monkeypatch.setenv("AVIGATE_INDEX", str(tmp_path / "repo"))
    monkeypatch.setenv("AVIGATE_MODEL", str(tmp_path / "model"))
    space = TestClient(load_script("examples/app.py").load_app())
    assert space.get("/").status_code == 200
    response = space.get("/media/video/0")
    assert response.status_code == 200
    assert response.content == (tmp_path / "repo" / "videos" / os.path.basename(built["paths"][0])).read_bytes()


def test_cli_serve_binds_localhost_and_old_indexes_are_to_be_rebuilt(built, tmp_path, monkeypatch, capsys):
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from modeling_avigate.cli import main
    from modeling_avigate.serve import app

    built["model"].save_pretrained(tmp_path / "model")
    save_copy(built["processor"], tmp_path / "model")
    assert main(["index", str(built["root"] / "videos"), "--model", str(tmp_path / "model"), "--out",
                 str(tmp_path / "gallery"), "--num-workers", "0"]) == 0
    served = {}
    monkeypatch.setattr(app, "bind", lambda host, port: served.update(host=host, port=port) or "listener")
    monkeypatch.setattr(app, "run", lambda server, listener: served.update(server=server, listener=listener))
    assert main(["serve", str(tmp_path / "gallery")]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 7860)
    assert any(getattr(route, "path", "") == "/media/video/{position}" for route in served["server"].routes)

    metadata = json.loads((tmp_path / "gallery" / METADATA_FILE).read_text())
    metadata["format_version"] = 1
    (tmp_path / "gallery" / METADATA_FILE).write_text(json.dumps(metadata))
    capsys.readouterr()
    assert main(["serve", str(tmp_path / "gallery")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.endswith("rebuild it with 'avigate index'")


def test_cli_serve_on_a_port_in_use_is_one_error_line(built, tmp_path, capsys):
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    import socket

    from modeling_avigate.cli import main

    built["model"].save_pretrained(tmp_path / "model")
    save_copy(built["processor"], tmp_path / "model")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        capsys.readouterr()
        assert main(["serve", str(built["root"] / "index"), "--model", str(tmp_path / "model"), "--force", "--port",
                     str(port)]) == 1
    out, err = capsys.readouterr()
    assert "serving" not in out
    last_line = err.splitlines()[-1]  # after the model's loading bar
    assert last_line == f"avigate serve: error: cannot listen on 127.0.0.1:{port}: address already in use"


@pytest.mark.parametrize("query", ["**bold** red", "<img src=x onerror=alert(1)> red", "zzqx <svg onload=alert(1)>"])
def test_messages_show_the_query_as_text(built, query):
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from modeling_avigate.serve.app import render_message

    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    result = SearchPage(index, page_size=3).query(query)
    message = render_message(result, 3)
    assert "<img" not in message and "<svg" not in message and "<b>" not in message
    shown = html.unescape(re.sub(r"<[^>]+>", "", message))
    if result.hits:  # the title and the unknown words, as typed
        assert f"Results for “{query}”" in shown and all(f"“{word}”" in shown for word in result.unknown_words)
        assert result.unknown_words == [word for word in query.split() if word != "red"]
    else:
        assert f"None of the words in “{query}”" in shown


def test_page_uses_the_two_stage_search_when_the_index_has_a_first_stage(built):
    pytest.importorskip("faiss", reason="the first stage needs faiss (retrieval extra)")
    index = VideoIndex.load(built["root"] / "index", model=built["model"], processor=built["processor"])
    exact = [hit.position for hit in SearchPage(index, page_size=5).query(QUERY).hits]
    index.build_first_stage("flat", shortlist_size=6)
    calls = []
    original = index.search_embeddings
    index.search_embeddings = lambda *args, **kwargs: calls.append(kwargs) or original(*args, **kwargs)
    assert [hit.position for hit in SearchPage(index, page_size=5).query(QUERY).hits] == exact
    assert calls and not calls[0].get("exact")


def test_cards_escape_file_names_and_show_a_placeholder_without_poster():
    pytest.importorskip("gradio", reason="the page needs the 'serve' extra (gradio)")
    from modeling_avigate.serve.app import render_card

    frames = torch.nn.functional.normalize(torch.randn(2, 3, 8), dim=-1)
    index = VideoIndex.from_embeddings(["/v/<img src=x onerror=alert(1)>.mp4", "/v/b.mp4"], frames)
    hit = SearchPage(index).more_like_this(1).hits[0]
    card = render_card(hit)
    assert "<img src=x" not in card and "&lt;img src=x onerror=alert(1)&gt;.mp4" in card
    assert not hit.has_poster and 'class="avigate-noposter"' in card and "media/poster" not in card
    assert hit.best_frame_time is None and "no sound track" in card
