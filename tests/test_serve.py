"""`llmcourse serve`: the official openai client against the lab SFT model (transformers) and its
GGUF file (llama.cpp's server): chat completions, streaming, API keys, and a burst of requests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
KEY = "sk-lab-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llmcourse", "serve", model, "--port", str(port), "--api-key", KEY, *extra],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    import urllib.request

    for _ in range(240):
        if process.poll() is not None:
            raise AssertionError(process.stdout.read() if process.stdout else "server exited")
        try:
            request = urllib.request.Request(f"{base}/models", headers={"Authorization": f"Bearer {KEY}"})
            if urllib.request.urlopen(request, timeout=1).status == 200:
                return process, base
        except OSError:
            pass
        time.sleep(0.25)
    process.kill()
    raise AssertionError("server did not start")


@pytest.fixture(scope="module")
def hf_server(lab_sft: str) -> Iterator[tuple[str, str]]:
    process, base = start_server(lab_sft, "--name", "lab-sft", "--max-queue", "8")
    yield base, lab_sft
    process.terminate()
    process.wait(timeout=20)


def chat_checks(base: str, model: str) -> str:
    from openai import AuthenticationError, OpenAI

    client = OpenAI(base_url=base, api_key=KEY)
    assert [m.id for m in client.models.list().data] == [model]
    question = [{"role": "user", "content": "Is 14 even or odd?"}]
    answer = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=8)
    text = answer.choices[0].message.content
    assert text and answer.usage.completion_tokens > 0
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=8, stream=True)
                       if chunk.choices)
    assert streamed.strip() == text.strip()
    with pytest.raises(AuthenticationError) as refused:
        OpenAI(base_url=base, api_key="wrong").chat.completions.create(model=model, messages=question, max_tokens=2)
    assert refused.value.status_code == 401
    return text


def test_openai_client_against_the_transformers_server(hf_server: tuple[str, str]) -> None:
    from llmcourse.generation.engines import HfEngine
    from llmcourse.generation.strategies import DecodeOptions, get_strategy

    base, path = hf_server
    text = chat_checks(base, "lab-sft")
    engine = HfEngine(path)
    expected = engine.generate(engine.prompt_ids("Is 14 even or odd?"), get_strategy("greedy"), DecodeOptions(max_new_tokens=8)).text
    assert text == expected, "the server's greedy answer is generate's greedy answer"


def test_a_burst_of_32_requests_completes_or_gets_a_clean_503(hf_server: tuple[str, str]) -> None:
    from openai import APIStatusError, OpenAI

    base, _ = hf_server
    client = OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=120)

    def ask(n: int) -> int:
        try:
            client.chat.completions.create(model="lab-sft", messages=[{"role": "user", "content": f"Is {n} even or odd?"}],
                                           temperature=0, max_tokens=6)
            return 200
        except APIStatusError as error:
            return error.status_code

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(ask, range(32)))
    assert set(codes) <= {200, 503} and codes.count(200) >= 9, codes  # 1 running + 8 queued at least
    assert client.models.list().data[0].id == "lab-sft", "the server is still up"


def test_the_gate_refuses_beyond_its_queue() -> None:
    import asyncio

    from llmcourse.serving.app import Gate

    async def scenario() -> list[bool]:
        gate = Gate(workers=1, queue=2)
        await gate.enter()  # running
        waiters = [asyncio.create_task(gate.enter()) for _ in range(2)]
        await asyncio.sleep(0)
        seen = [gate.full()]
        gate.leave()
        await asyncio.sleep(0)
        seen.append(gate.full())
        for task in waiters:
            task.cancel()
        return seen

    assert asyncio.run(scenario()) == [True, False]


@pytest.mark.gguf
def test_openai_client_against_llama_cpp_server_on_a_gguf(demo_report: dict) -> None:
    gguf = next(stage["path"] for stage in demo_report["stages"] if stage["stage"].startswith("GGUF Q8_0"))
    process, base = start_server(gguf, "--name", "lab-q8")
    try:
        chat_checks(base, "lab-q8")
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert Path(gguf).suffix == ".gguf"
