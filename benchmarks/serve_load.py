"""Load on `llmcourse serve`: N concurrent chat requests through the official openai client.

Starts the server on a free port (the lab SFT model by default, or MODEL, HF folder or .gguf),
fires --requests requests from --concurrency threads, and prints latency p50/p95, throughput and
how many were refused with 503 (the bounded queue) — never dropped or crashed.

    python benchmarks/serve_load.py [MODEL] [--requests 64] [--concurrency 32] [--max-queue 16]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import urllib.request

    from openai import APIStatusError, OpenAI

    from llmcourse.core.cache import llmcourse_home

    model = args.model or str(sorted((llmcourse_home() / "lab").glob("sft-*"), key=os.path.getmtime)[-1])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llmcourse", "serve", model, "--port", str(port), "--name", "bench",
                               "--max-queue", str(args.max_queue)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{base}/models", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.25)
        client = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=300)

        def ask(n: int) -> tuple[int, float]:
            started = time.perf_counter()
            try:
                client.chat.completions.create(model="bench", messages=[{"role": "user", "content": f"Is {n} even or odd?"}],
                                               temperature=0, max_tokens=16)
                return 200, time.perf_counter() - started
            except APIStatusError as error:
                return error.status_code, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(ask, range(args.requests)))
        wall = time.perf_counter() - started
        alive = urllib.request.urlopen(f"{base}/models", timeout=5).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = sorted(latency for code, latency in results if code == 200)
    report = {"model": model, "requests": args.requests, "concurrency": args.concurrency, "max_queue": args.max_queue,
              "completed": len(ok), "refused_503": sum(code == 503 for code, _ in results),
              "other_errors": sum(code not in (200, 503) for code, _ in results), "server_alive_after": alive,
              "latency_p50_s": round(statistics.median(ok), 3) if ok else None,
              "latency_p95_s": round(ok[int(0.95 * (len(ok) - 1))], 3) if ok else None,
              "throughput_rps": round(len(ok) / wall, 2)}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
