"""An OpenAI-compatible HTTP API over a transformers model (`/v1/models`, `/v1/completions`,
`/v1/chat/completions`, with server-sent-event streaming).

Requests that arrive while the model is busy are decoded together in its next `generate` call
(`serving.batching`); beyond a bounded queue they get 503 with `Retry-After` instead of piling up.
With an API key, every request without `Authorization: Bearer KEY` gets 401 in OpenAI's error format.
"""


import asyncio  # noqa: I001  (no postponed annotations: FastAPI reads the route signatures)
import json
import time
import uuid
from typing import Any, AsyncIterator

from llmcourse.generation.strategies import DecodeOptions, get_strategy
from llmcourse.serving.batching import Batcher, Job


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error JSON."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def generation_error(exc: Exception) -> dict[str, Any]:
    """OpenAI's error JSON for a request whose generation failed (the server log has the traceback)."""
    return error_body(f"Generation failed: {type(exc).__name__}: {exc}", "server_error")


def decode_options(body: dict[str, Any]) -> tuple[Any, DecodeOptions, int | None]:
    """(strategy, options, seed or None) from an OpenAI request: temperature 0 is greedy, else nucleus sampling."""
    temperature = float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0)
    options = DecodeOptions(max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
                            temperature=max(temperature, 1e-5), top_p=float(body.get("top_p") or 1.0))
    strategy = get_strategy("greedy" if temperature == 0 else "top-p")
    return strategy, options, (int(body["seed"]) if body.get("seed") is not None else None)


def create_app(engine: Any, model_id: str, api_key: str | None = None, max_batch: int = 32, queue: int = 256,
               continuous_batching: bool = False) -> Any:
    """The FastAPI app serving `engine` (an HfEngine) under the name `model_id`; with `continuous_batching`,
    through transformers' continuous batching manager (`serving.continuous`, greedy only)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    if continuous_batching:
        from llmcourse.serving.continuous import ContinuousBatcher

        batcher: Any = ContinuousBatcher(engine, queue)
    else:
        batcher = Batcher(engine, max_batch, queue)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if continuous_batching:
            batcher.start()
        worker = asyncio.create_task(batcher.serve_forever())
        yield
        worker.cancel()

    app = FastAPI(title="llmcourse serve", version="1", lifespan=lifespan)

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse(error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "llmcourse"}]}

    async def respond(body: dict[str, Any], ids: list[int], chat: bool) -> Any:
        if batcher.full():
            return JSONResponse(error_body("The server is busy; retry shortly.", "server_busy"), status_code=503, headers={"Retry-After": "1"})
        if continuous_batching and body.get("temperature") not in (None, 0):
            return JSONResponse(error_body("This server runs with --continuous-batching, which decodes greedily (transformers' "
                                           "manager shares one generation config): send temperature 0, or restart the server "
                                           "without --continuous-batching to sample.", "invalid_request_error", "unsupported_value"),
                                status_code=400)
        strategy, options, seed = decode_options({**body, "temperature": 0} if continuous_batching else body)
        context = engine.context_length
        if context and len(ids) + options.max_new_tokens > context:  # checked here: one such request would fail its whole batch
            return JSONResponse(error_body(f"This model's maximum context length is {context} tokens. However, you requested "
                                           f"{len(ids) + options.max_new_tokens} tokens ({len(ids)} in the messages, "
                                           f"{options.max_new_tokens} in the completion). Please reduce the length of the "
                                           "messages or the completion.", "invalid_request_error", "context_length_exceeded"),
                                status_code=400)
        created, rid = int(time.time()), ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        job = Job(ids, strategy, options, seed, stream=bool(body.get("stream")))
        done = batcher.submit(job)
        if not job.stream:
            try:
                row = await done
            except Exception as exc:  # noqa: BLE001  (the worker logged it; the client gets OpenAI's error JSON)
                return JSONResponse(generation_error(exc), status_code=500)
            usage = {"prompt_tokens": len(ids), "completion_tokens": len(row.token_ids), "total_tokens": len(ids) + len(row.token_ids)}
            choice = ({"index": 0, "message": {"role": "assistant", "content": row.text}, "finish_reason": row.finish_reason} if chat
                      else {"index": 0, "text": row.text, "logprobs": None, "finish_reason": row.finish_reason})
            return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created, "model": model_id,
                    "choices": [choice], "usage": usage}

        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            part = {"delta": delta} if chat else {"text": delta.get("content", "")}
            return _sse({"id": rid, "object": kind, "created": created, "model": model_id,
                         "choices": [{"index": 0, **part, "finish_reason": finish}]})

        async def events() -> AsyncIterator[str]:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            sent = ""
            while (piece := await job.pieces.get()) is not None:
                sent += piece
                yield chunk({"content": piece})
            try:
                row = await done
            except Exception as exc:  # noqa: BLE001
                yield _sse(generation_error(exc))
                return
            if row.text.startswith(sent) and len(row.text) > len(sent):
                yield chunk({"content": row.text[len(sent):]})
            yield chunk({}, row.finish_reason)
            yield "data: [DONE]\n\n"

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
