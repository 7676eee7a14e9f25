"""`llmcourse serve`: the official openai client against the lab SFT model (transformers) and its
GGUF file (llama.cpp's server): chat completions, streaming, API keys, and a burst of requests."""

from __future__ import annotations

import json
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
    process, base = start_server(lab_sft, "--name", "lab-sft")
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


def burst(base: str, count: int, max_tokens: int = 6) -> list[tuple[int, str]]:
    """`count` chat requests at once from as many threads: (status, answer or Retry-After)."""
    from openai import APIStatusError, OpenAI

    client = OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=120)

    def ask(n: int) -> tuple[int, str]:
        try:
            answer = client.chat.completions.create(model="lab-sft", messages=[{"role": "user", "content": f"Is {n} even or odd?"}],
                                                    temperature=0, max_tokens=max_tokens)
            return 200, answer.choices[0].message.content
        except APIStatusError as error:
            return error.status_code, error.response.headers.get("retry-after", "")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(ask, range(count)))


def test_a_burst_of_32_requests_is_served_in_full_at_default_settings(hf_server: tuple[str, str]) -> None:
    from llmcourse.generation.engines import HfEngine
    from llmcourse.generation.strategies import DecodeOptions, get_strategy

    base, path = hf_server
    results = burst(base, 32)
    assert [code for code, _ in results] == [200] * 32
    engine = HfEngine(path)
    expected = [engine.generate(engine.prompt_ids(f"Is {n} even or odd?"), get_strategy("greedy"), DecodeOptions(max_new_tokens=6)).text
                for n in range(32)]
    assert [text for _, text in results] == expected, "batched answers are the answers generate gives one at a time"


def test_a_request_beyond_the_context_is_refused_before_it_joins_a_batch(hf_server: tuple[str, str]) -> None:
    from openai import BadRequestError, OpenAI

    base, path = hf_server
    context = json.loads((Path(path) / "config.json").read_text())["max_position_embeddings"]
    client = OpenAI(base_url=base, api_key=KEY, max_retries=0)
    question = [{"role": "user", "content": "Is 14 even or odd?"}]
    with pytest.raises(BadRequestError) as refused:
        client.chat.completions.create(model="lab-sft", messages=question, max_tokens=context)
    assert refused.value.code == "context_length_exceeded" and f"maximum context length is {context}" in refused.value.message
    assert client.chat.completions.create(model="lab-sft", messages=question, max_tokens=4, temperature=0).choices[0].message.content


def test_beyond_its_queue_the_server_refuses_with_503_and_stays_up(lab_sft: str) -> None:
    """The worker is held inside `generate` while three requests arrive for a queue of two: exactly
    one is refused, whatever order they arrive in; released, the server answers the others."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from fastapi.testclient import TestClient

    from llmcourse.generation.engines import HfEngine
    from llmcourse.serving.app import create_app

    engine = HeldEngine(HfEngine(lab_sft))
    ask = {"model": "lab-sft", "temperature": 0, "max_tokens": 4, "messages": [{"role": "user", "content": "Is 14 even or odd?"}]}
    with TestClient(create_app(engine, "lab-sft", max_batch=1, queue=2)) as client, ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/v1/chat/completions", json=ask)
        assert engine.entered.wait(60), "the first request reached generate"
        burst = [pool.submit(client.post, "/v1/chat/completions", json=ask) for _ in range(3)]
        done, _ = wait(burst, timeout=60, return_when=FIRST_COMPLETED)  # while the worker is held, only a refusal returns
        assert [future.result().status_code for future in done] == [503]
        engine.release.set()
        answers = [first.result(timeout=120)] + [future.result(timeout=120) for future in burst]
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200, 200, 200, 503], codes
    refused = next(answer for answer in answers if answer.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["type"] == "server_busy"
    assert len({answer.json()["choices"][0]["message"]["content"] for answer in answers if answer.status_code == 200}) == 1


class HeldEngine:
    """The real engine, whose first `generate` call waits until `release` is set."""

    def __init__(self, engine: object) -> None:
        import threading

        self.engine, self.entered, self.release = engine, threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def generate_batch(self, *args: object) -> list:
        self.entered.set()
        assert self.release.wait(120)
        return self.engine.generate_batch(*args)


def test_jobs_batch_with_jobs_that_decode_alike_and_a_seeded_sample_runs_alone() -> None:
    from llmcourse.generation.strategies import DecodeOptions, get_strategy
    from llmcourse.serving.batching import Batcher, Job

    greedy, nucleus = get_strategy("greedy"), get_strategy("top-p")
    jobs = [Job([1], greedy, DecodeOptions(max_new_tokens=4)), Job([2], nucleus, DecodeOptions(temperature=0.7)),
            Job([3], greedy, DecodeOptions(max_new_tokens=9)), Job([4], nucleus, DecodeOptions(temperature=0.7), seed=5),
            Job([5], nucleus, DecodeOptions(temperature=0.7)), Job([6], greedy, DecodeOptions(max_new_tokens=2))]
    batcher = Batcher(engine=None, max_batch=2, max_queue=6)
    batcher.pending = list(jobs)
    assert batcher.full()
    batches = [[job.ids[0] for job in batcher.take_batch()] for _ in range(4)]
    assert batches == [[1, 3], [2, 5], [4], [6]]
    assert not batcher.pending and not batcher.full()


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


class OneBadPrompt:
    """The real engine, except that any `generate` call holding `bad` fails (as a request that breaks
    the model would); records the batch sizes it was called with."""

    def __init__(self, engine: object, bad: list[int]) -> None:
        self.engine, self.bad, self.calls = engine, bad, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def generate_batch(self, prompts: list[list[int]], *args: object) -> list:
        self.calls.append(len(prompts))
        if self.bad in prompts:
            raise RuntimeError("this prompt breaks the model")
        return self.engine.generate_batch(prompts, *args)


def test_a_failing_request_fails_alone_and_its_batch_mates_are_answered(lab_sft: str) -> None:
    import asyncio

    from llmcourse.generation.engines import HfEngine
    from llmcourse.generation.strategies import DecodeOptions, get_strategy
    from llmcourse.serving.batching import Batcher, Job

    real = HfEngine(lab_sft)
    greedy, options = get_strategy("greedy"), DecodeOptions(max_new_tokens=6)
    prompts = [real.prompt_ids(f"Is {n} even or odd?") for n in range(4)]
    engine = OneBadPrompt(real, prompts[2])

    async def serve() -> list:
        batcher = Batcher(engine, max_batch=8, max_queue=8)
        futures = [batcher.submit(Job(ids, greedy, options)) for ids in prompts]  # all waiting: one batch
        worker = asyncio.create_task(batcher.serve_forever())
        results = await asyncio.gather(*futures, return_exceptions=True)
        worker.cancel()
        return results

    results = asyncio.run(serve())
    assert engine.calls == [4, 1, 1, 1, 1], "the failed batch is decoded again one request at a time"
    assert isinstance(results[2], RuntimeError)
    expected = [real.generate(ids, greedy, options).text for ids in prompts]
    assert [row.text for index, row in enumerate(results) if index != 2] == expected[:2] + expected[3:]


def test_a_failed_generation_is_answered_with_openai_error_json_and_the_server_goes_on(lab_sft: str) -> None:
    from fastapi.testclient import TestClient

    from llmcourse.generation.engines import HfEngine
    from llmcourse.serving.app import create_app

    real = HfEngine(lab_sft)
    engine = OneBadPrompt(real, real.prompt_ids("break"))
    with TestClient(create_app(engine, "lab-sft")) as client:
        ask = {"model": "lab-sft", "temperature": 0, "max_tokens": 4}
        failed = client.post("/v1/chat/completions", json={**ask, "messages": [{"role": "user", "content": "break"}]})
        assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
        assert "breaks the model" in failed.json()["error"]["message"]
        streamed = client.post("/v1/chat/completions", json={**ask, "stream": True, "messages": [{"role": "user", "content": "break"}]})
        assert '"server_error"' in streamed.text
        fine = client.post("/v1/chat/completions", json={**ask, "messages": [{"role": "user", "content": "Is 14 even or odd?"}]})
        assert fine.status_code == 200 and fine.json()["choices"][0]["message"]["content"]


def test_continuous_batching_without_a_gpu_is_refused_before_loading(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the gpu-marked test covers the flag")
    result = subprocess.run([sys.executable, "-m", "llmcourse", "serve", str(tmp_path / "no-such-model"), "--continuous-batching"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--continuous-batching needs a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr and "not found" not in result.stderr.lower(), "refused before the model is looked at"


def test_continuous_batching_of_a_gguf_file_is_refused(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "llmcourse", "serve", str(tmp_path / "model.Q8_0.gguf"), "--continuous-batching"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--continuous-batching is for transformers models" in result.stderr
    assert "Traceback" not in result.stderr


def continuous_batching_checks(client: object, engine: object) -> None:
    """Greedy answers through transformers' continuous batching equal `generate`'s; sampling is refused."""
    from llmcourse.generation.strategies import DecodeOptions, get_strategy

    ask = {"model": "lab-sft", "max_tokens": 6}
    for n in (3, 14):
        question = f"Is {n} even or odd?"
        expected = engine.generate(engine.prompt_ids(question), get_strategy("greedy"), DecodeOptions(max_new_tokens=6)).text
        answer = client.post("/v1/chat/completions", json={**ask, "messages": [{"role": "user", "content": question}]})
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == expected
        streamed = client.post("/v1/chat/completions", json={**ask, "stream": True, "messages": [{"role": "user", "content": question}]})
        pieces = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
        assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces) == expected
    sampled = client.post("/v1/chat/completions", json={**ask, "temperature": 0.7, "messages": [{"role": "user", "content": "Is 3 even or odd?"}]})
    assert sampled.status_code == 400 and "--continuous-batching" in sampled.json()["error"]["message"]


def test_continuous_batching_answers_as_generate_does(lab_sft: str) -> None:
    """transformers' manager runs on a CPU too (slowly): the server's use of it is checked here, the
    CUDA path by the gpu-marked test."""
    from fastapi.testclient import TestClient

    from llmcourse.generation.engines import HfEngine
    from llmcourse.serving.app import create_app

    reference = HfEngine(lab_sft)
    with TestClient(create_app(HfEngine(lab_sft), "lab-sft", continuous_batching=True)) as client:
        continuous_batching_checks(client, reference)


@pytest.mark.gpu
def test_continuous_batching_on_cuda(lab_sft: str) -> None:
    import torch
    from fastapi.testclient import TestClient

    from llmcourse.generation.engines import HfEngine
    from llmcourse.serving.app import create_app

    engine = HfEngine(lab_sft)
    engine.model.to("cuda")
    assert torch.cuda.is_available()
    reference = HfEngine(lab_sft)
    with TestClient(create_app(engine, "lab-sft", continuous_batching=True)) as client:
        continuous_batching_checks(client, reference)
