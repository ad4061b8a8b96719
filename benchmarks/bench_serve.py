# Copyright 2026 The modeling_avigate Authors. Licensed under the Apache License, Version 2.0.
"""Server time of one search on the `avigate serve` page over an 840-video index (the size of `make demo`'s
synthetic benchmark: 600 train + 120 validation + 120 test clips).

What is timed is what the page's footer prints: `SearchPage.query` (text encoding, the exact scan, the score parts
and best frame of the shown results), plus rendering the result grid's HTML. The baseline, timed in the same run and
interleaved, is `VideoIndex.search` for the same query (text encoding and scan only, what `avigate search` does), so
the ratio is the page's own overhead.

Two model/index shapes, both randomly initialised (timing does not depend on training):
- `demo`: the demo's synthetic configuration (`examples/configs/synthetic.yaml`: D = 64, 8 frames, 2-layer text
  tower);
- `paper`: the paper's ViT-B/32 sizes (D = 512, 12 frames, CLIP's 12-layer 512-wide text tower).

`--index DIR` times the same on a real index with the model recorded in it instead (e.g. `outputs/demo/index`, built
from the demo's clips as docs/serve.md shows).

`--clients N` measures the page server over HTTP instead: N clients at once, each sending `--queries-per-client`
queries one after the other through the page's own protocol (Gradio's `queue/join` + `queue/data` event stream, as
the browser does), against two servers started side by side in child processes over the same demo-size synthetic
index: Gradio's default queue (one event at a time) and the page's (`create_app`'s default concurrency). Rounds
alternate between the two; each prints queries/s, client-side p50/p95 latency, errors and the load average.

Usage:

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py [--videos 840] [--queries 50]
    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py --index outputs/demo/index
    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py --clients 20 --queries-per-client 25
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import time
import uuid

import httpx
import torch
import yaml

from modeling_avigate import AvigateConfig, AvigateModel
from modeling_avigate.data.synthetic import synthetic_tokenizer
from modeling_avigate.processors import AvigateFeatureExtractor, AvigateProcessor, AvigateVideoProcessor
from modeling_avigate.search import VideoIndex
from modeling_avigate.serve.app import CONCURRENCY, bind, create_app, render_results, run
from modeling_avigate.serve.search_page import SearchPage


CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "configs", "synthetic-from-scratch.yaml")
QUERIES = ["a red circle moves left with a high beep", "a blue square moves up with a low hum",
           "a green triangle moves right with a rising chirp", "a yellow circle moves down with a click train"]


def build_model(shape: str, tokenizer) -> tuple[AvigateModel, int]:
    """A random model of the demo's or the paper's size and its number of frames per video."""
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if shape == "demo":
        with open(CONFIG) as handle:
            config = yaml.safe_load(handle)
        kwargs = config["model"]
        kwargs["text_config"] = {**kwargs["text_config"], "vocab_size": len(tokenizer), **special}
        num_frames = config["processor"]["num_frames"]
    else:
        kwargs = {"text_config": special}  # CLIP ViT-B/32 text tower (49408-token table, 12 layers, width 512)
        num_frames = 12
    return AvigateModel(AvigateConfig(**kwargs)).eval(), num_frames


def synthetic_index(model: AvigateModel, processor, num_videos: int, num_frames: int) -> VideoIndex:
    frames = torch.nn.functional.normalize(torch.randn(num_videos, num_frames, model.config.projection_dim), dim=-1)
    index = VideoIndex.from_embeddings([f"/videos/clip-{i:04d}.mp4" for i in range(num_videos)], frames,
                                       has_audio=torch.rand(num_videos) < 0.9,
                                       logit_scale=model.get_logit_scale().item())
    return index.attach(model, processor, force=True)


def synthetic_page(tokenizer, shape: str, num_videos: int) -> SearchPage:
    """The page over a synthetic index of `num_videos` random videos, with a random model of `shape`."""
    model, num_frames = build_model(shape, tokenizer)
    processor = AvigateProcessor(AvigateFeatureExtractor(), AvigateVideoProcessor(num_frames=num_frames), tokenizer)
    return SearchPage(synthetic_index(model, processor, num_videos, num_frames))


def load_index(path: str) -> VideoIndex:
    """A saved index with the model and processor that built it attached."""
    name = VideoIndex.read_metadata(path)["model"]["name_or_path"]
    model = AvigateModel.from_pretrained(name).eval()
    return VideoIndex.load(path, model=model, processor=AvigateProcessor.from_pretrained(name))


def time_page(label: str, page: SearchPage, num_queries: int) -> None:
    """Print the medians of the page's query + render time and of `VideoIndex.search`, interleaved."""
    for query in QUERIES:  # warm-up
        page.query(query)
    page_times, baseline_times, parts = [], [], {}
    for number in range(num_queries):
        query = QUERIES[number % len(QUERIES)]
        results = []
        page_times.append(milliseconds(lambda: render_results(results.append(page.query(query)) or results[0])))
        baseline_times.append(milliseconds(lambda: page.index.search(query, k=page.page_size)))
        for name, value in results[0].timings.items():
            parts.setdefault(name, []).append(value)
    page_median, baseline_median = statistics.median(page_times), statistics.median(baseline_times)
    p95 = sorted(page_times)[int(0.95 * (len(page_times) - 1))]
    print(f"{label}: page query + render p50 {page_median:.1f} ms, p95 {p95:.1f} ms; VideoIndex.search p50 "
          f"{baseline_median:.1f} ms; ratio {page_median / baseline_median:.2f}; of which "
          + ", ".join(f"{name} {statistics.median(values):.1f} ms" for name, values in parts.items())
          + f"; load average {os.getloadavg()[0]:.2f}")


def milliseconds(function) -> float:
    started = time.perf_counter()
    function()
    return 1000 * (time.perf_counter() - started)


# -- the page server over HTTP ------------------------------------------------------------------------------------


class PageClient:
    """One visitor of the page: sends queries through the page's own protocol, one session, one query at a time."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, config: dict):
        self.client, self.base_url = client, base_url.rstrip("/")
        # The query box's event, as the browser finds it in the page's config.
        event = next(index for index, dependency in enumerate(config["dependencies"])
                     if dependency.get("api_name") == "run_query")
        self.event, self.trigger = event, config["dependencies"][event]["targets"][0][0]
        self.session = uuid.uuid4().hex[:11]

    async def query(self, text: str) -> list:
        """The event's outputs for `text` (the result grid's HTML first); raises on any error the page reports."""
        joined = await self.client.post(f"{self.base_url}/gradio_api/queue/join",
                                        json={"data": [text], "fn_index": self.event,
                                              "trigger_id": self.trigger, "session_hash": self.session})
        joined.raise_for_status()
        async with self.client.stream("GET", f"{self.base_url}/gradio_api/queue/data",
                                      params={"session_hash": self.session}) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[len("data: "):])
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"the page reported an error: {message.get('output')}")
                    return message["output"]["data"]
        raise RuntimeError("the event stream closed before the result")


async def load_test(base_url: str, clients: int, queries_per_client: int) -> dict:
    """`clients` visitors at once, each sending `queries_per_client` queries in turn: throughput and latencies."""
    limits = httpx.Limits(max_connections=2 * clients + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        config = (await client.get(f"{base_url}config")).json()
        latencies, errors = [], []

        async def visitor(number: int) -> None:
            page = PageClient(client, base_url, config)
            for turn in range(queries_per_client):
                started = time.perf_counter()
                try:
                    await page.query(QUERIES[(number + turn) % len(QUERIES)])
                    latencies.append(time.perf_counter() - started)
                except (httpx.HTTPError, RuntimeError) as error:
                    errors.append(str(error))

        started = time.perf_counter()
        await asyncio.gather(*(visitor(number) for number in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"queries_per_s": len(latencies) / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))], "answered": len(latencies),
            "errors": len(errors), "wall_s": wall}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux `/proc`)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_synthetic(concurrency: int | None, port: int, num_videos: int, ready) -> None:
    """Child process: the page over a demo-size synthetic index on `port` with `concurrency` queries at once."""
    torch.manual_seed(0)
    tokenizer = synthetic_tokenizer()
    tokenizer.model_max_length = 32
    app = create_app(synthetic_page(tokenizer, "demo", num_videos).index, share_nothing=True, concurrency=concurrency)
    listener = bind("127.0.0.1", port)
    ready.set()
    run(app, listener)


def compare_queues(args: argparse.Namespace) -> None:
    """Gradio's default queue (concurrency 1) and the page's, side by side, rounds alternating."""
    context = multiprocessing.get_context("spawn")
    settings = {"Gradio default queue (1 at a time)": 1, f"the page (create_app, {CONCURRENCY} at a time)": CONCURRENCY}
    servers, urls = {}, {}
    try:
        for number, (label, concurrency) in enumerate(settings.items()):
            ready = context.Event()
            port = args.port + number
            server = context.Process(target=serve_synthetic, args=(concurrency, port, args.videos, ready), daemon=True)
            server.start()
            servers[label] = server
            if not ready.wait(300):
                raise RuntimeError(f"the server for {label} did not start")
            urls[label] = f"http://127.0.0.1:{port}/"
        for url in urls.values():  # warm-up: first queries load the page's code paths
            asyncio.run(load_test(url, 2, 5))
        for round_number in range(args.rounds):
            for label, url in urls.items():
                server_cpu, client_cpu = cpu_seconds(servers[label].pid), time.process_time()
                result = asyncio.run(load_test(url, args.clients, args.queries_per_client))
                server_cpu, client_cpu = cpu_seconds(servers[label].pid) - server_cpu, time.process_time() - client_cpu
                print(f"round {round_number + 1}, {label}: {result['queries_per_s']:.1f} queries/s, client p50 "
                      f"{result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, {result['answered']} answered, "
                      f"{result['errors']} errors, {result['wall_s']:.1f} s; CPU per query: server "
                      f"{1000 * server_cpu / result['answered']:.1f} ms, clients {1000 * client_cpu / result['answered']:.1f} ms; "
                      f"load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=840)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--index", help="time a saved index with its own model instead of synthetic ones")
    parser.add_argument("--shapes", nargs="+", default=["demo", "paper"], choices=["demo", "paper"])
    parser.add_argument("--clients", type=int, help="measure the page server over HTTP with this many clients")
    parser.add_argument("--queries-per-client", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server, alternating (with --clients)")
    parser.add_argument("--port", type=int, default=7870, help="first of the two servers' ports (with --clients)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}; load average before: {os.getloadavg()}")
    if args.clients:
        compare_queues(args)
        return
    torch.manual_seed(0)
    tokenizer = synthetic_tokenizer()
    tokenizer.model_max_length = 32
    if args.index:
        index = load_index(args.index)
        time_page(f"{args.index} N={len(index)} T={index.frame_embeds.shape[1]} D={index.frame_embeds.shape[2]}",
                  SearchPage(index), args.queries)
        return
    for shape in args.shapes:
        page = synthetic_page(tokenizer, shape, args.videos)
        time_page(f"{shape:5s} N={args.videos} T={page.index.frame_embeds.shape[1]} "
                  f"D={page.index.frame_embeds.shape[2]}", page, args.queries)


if __name__ == "__main__":
    main()
