"""Load on `llmcourse serve` beside `transformers serve`: the same N chat requests from the same
client threads (the official openai client), each server at its default settings, one after the other.

Starts each server on a free port (the lab SFT model by default, or MODEL, an HF folder), fires
--requests greedy chat requests from --concurrency threads, and prints per server latency p50/p95,
completed requests per second, how many were refused with 503 (the bounded queue) and whether the
server is still up; then llmcourse's throughput as a ratio of transformers'. --server picks one.

    python benchmarks/serve_load.py [MODEL] [--requests 64] [--concurrency 32] [--server both|llmcourse|transformers]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(server: str, model: str, port: int, max_queue: int | None) -> subprocess.Popen:
    """Start one server on `port`, output discarded."""
    if server == "transformers":
        command = [str(Path(sys.executable).with_name("transformers")), "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "llmcourse", "serve", model, "--port", str(port), "--name", model]
        command += ["--max-queue", str(max_queue)] if max_queue is not None else []
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(server: str, model: str, requests: int, concurrency: int, max_queue: int | None) -> dict:
    """Fire the burst at one server and measure it."""
    import urllib.request

    from openai import APIStatusError, OpenAI

    port = free_port()
    process = start(server, model, port, max_queue)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(480):
            try:
                if urllib.request.urlopen(f"{base}/models", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.25)
        client = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=300)

        def ask(n: int) -> tuple[int, float]:
            started = time.perf_counter()
            try:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"Is {n} even or odd?"}],
                                               temperature=0, max_tokens=16)
                return 200, time.perf_counter() - started
            except APIStatusError as error:
                return error.status_code, time.perf_counter() - started

        ask(-1)  # warm-up: the first request loads or compiles lazily on some servers
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(ask, range(requests)))
        wall = time.perf_counter() - started
        alive = urllib.request.urlopen(f"{base}/models", timeout=5).status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    ok = sorted(latency for code, latency in results if code == 200)
    return {"server": server, "completed": len(ok), "refused_503": sum(code == 503 for code, _ in results),
            "other_errors": sum(code not in (200, 503) for code, _ in results), "server_alive_after": alive,
            "latency_p50_s": round(statistics.median(ok), 3) if ok else None,
            "latency_p95_s": round(ok[int(0.95 * (len(ok) - 1))], 3) if ok else None,
            "throughput_rps": round(len(ok) / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--server", choices=["both", "llmcourse", "transformers"], default="both")
    parser.add_argument("--max-queue", type=int, help="llmcourse serve's --max-queue (default: its own default)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from llmcourse.core.cache import llmcourse_home

    model = args.model or str(sorted((llmcourse_home() / "lab").glob("sft-*"), key=os.path.getmtime)[-1])
    servers = ["llmcourse", "transformers"] if args.server == "both" else [args.server]
    report = {"model": model, "requests": args.requests, "concurrency": args.concurrency,
              "runs": [load(server, model, args.requests, args.concurrency, args.max_queue) for server in servers]}
    if len(report["runs"]) == 2 and report["runs"][1]["throughput_rps"]:
        report["throughput_ratio_vs_transformers"] = round(report["runs"][0]["throughput_rps"] / report["runs"][1]["throughput_rps"], 2)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
