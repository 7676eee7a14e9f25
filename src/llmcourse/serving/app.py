"""An OpenAI-compatible HTTP API over a transformers model (`/v1/models`, `/v1/completions`,
`/v1/chat/completions`, with server-sent-event streaming).

One model, one generation at a time (a transformers model is not re-entrant); requests wait in a
bounded queue and the ones beyond it get 503 with `Retry-After` instead of piling up. With an API
key, every request without `Authorization: Bearer KEY` gets 401 in OpenAI's error format.
"""


import asyncio  # noqa: I001  (no postponed annotations: FastAPI reads the route signatures)
import json
import time
import uuid
from typing import Any, AsyncIterator

from llmcourse.generation.strategies import DecodeOptions, get_strategy


class Gate:
    """At most `workers` generations at once and `queue` waiting; beyond that, refuse."""

    def __init__(self, workers: int, queue: int) -> None:
        self.slots = asyncio.Semaphore(workers)
        self.waiting = 0
        self.queue = queue

    def full(self) -> bool:
        """True when one more request would exceed the queue."""
        return self.waiting >= self.queue

    async def enter(self) -> None:
        """Wait for a free slot (the caller checked `full` first)."""
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        """Free the slot."""
        self.slots.release()


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error JSON."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def decode_options(body: dict[str, Any]) -> tuple[Any, DecodeOptions, int]:
    """(strategy, options, seed) from an OpenAI request: temperature 0 is greedy, else nucleus sampling."""
    temperature = float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0)
    options = DecodeOptions(max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
                            temperature=max(temperature, 1e-5), top_p=float(body.get("top_p") or 1.0))
    strategy = get_strategy("greedy" if temperature == 0 else "top-p")
    return strategy, options, int(body.get("seed") or 0)


def create_app(engine: Any, model_id: str, api_key: str | None = None, workers: int = 1, queue: int = 16) -> Any:
    """The FastAPI app serving `engine` under the name `model_id`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

    app = FastAPI(title="llmcourse serve", version="1")
    gate = Gate(workers, queue)

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse(error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "llmcourse"}]}

    async def respond(body: dict[str, Any], ids: list[int], chat: bool) -> Any:
        if gate.full():
            return JSONResponse(error_body("The server is busy; retry shortly.", "server_busy"), status_code=503, headers={"Retry-After": "1"})
        strategy, options, seed = decode_options(body)
        created, rid = int(time.time()), ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        await gate.enter()
        if not body.get("stream"):
            try:
                result = await run_in_threadpool(engine.generate, ids, strategy, options, seed)
            finally:
                gate.leave()
            finish = "length" if len(result.token_ids) >= options.max_new_tokens else "stop"
            usage = {"prompt_tokens": len(ids), "completion_tokens": len(result.token_ids), "total_tokens": len(ids) + len(result.token_ids)}
            choice = ({"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": finish} if chat
                      else {"index": 0, "text": result.text, "logprobs": None, "finish_reason": finish})
            return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created, "model": model_id,
                    "choices": [choice], "usage": usage}

        async def events() -> AsyncIterator[str]:
            kind = "chat.completion.chunk" if chat else "text_completion"
            try:
                if chat:
                    yield _sse({"id": rid, "object": kind, "created": created, "model": model_id,
                                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                async for piece in iterate_in_threadpool(engine.stream(ids, strategy, options, seed)):
                    if piece:
                        delta = {"delta": {"content": piece}} if chat else {"text": piece}
                        yield _sse({"id": rid, "object": kind, "created": created, "model": model_id,
                                    "choices": [{"index": 0, **delta, "finish_reason": None}]})
                end = {"delta": {}} if chat else {"text": ""}
                yield _sse({"id": rid, "object": kind, "created": created, "model": model_id, "choices": [{"index": 0, **end, "finish_reason": "stop"}]})
                yield "data: [DONE]\n\n"
            finally:
                gate.leave()

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = await request.json()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse(error_body("'messages' must be a non-empty list", "invalid_request_error"), status_code=400)
        system = next((m["content"] for m in messages if m.get("role") == "system"), None)
        turns = [{"role": m["role"], "content": m.get("content") or ""} for m in messages if m.get("role") != "system"]
        history, last = turns[:-1], turns[-1]["content"]
        if system:
            history = [{"role": "system", "content": system}] + history
        ids = engine.prompt_ids(last, history=history or None)
        return await respond(body, ids, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return JSONResponse(error_body("'prompt' must be a string", "invalid_request_error"), status_code=400)
        return await respond(body, engine.prompt_ids(prompt, raw=True), chat=False)

    return app


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
