"""`llmcourse serve --continuous-batching`: transformers' continuous batching manager instead of our
dynamic batches. Requests join the running batch at the next decoding step and leave it when they
finish (paged attention, a KV cache in blocks), so a long answer does not hold short ones back.

It is made for GPUs: on a CPU the manager ran 32 lab prompts in 9.3 s against 0.09 s for one padded
`generate`, so the command refuses it without CUDA. transformers' manager shares one generation
config across its requests (as `transformers serve` does, it takes no per-request sampling), so this
server decodes greedily: a request that asks for sampling gets a 400 naming the flag. Same
interface as `serving.batching.Batcher` (`full`, `submit`, `serve_forever`).

Only public methods of transformers' documented manager are called (`init_continuous_batching`, `add_request`,
`register_result_handler`, `start`, `stop`; checked with transformers 5.24);
`test_serve.py::test_continuous_batching_answers_as_generate_does` runs them on CPU, so a change
in them fails the suite, not a user's server.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from llmcourse.generation.engines import BatchRow, split_at_stop
from llmcourse.serving.batching import Job


class ContinuousBatcher:
    """Hands each job to transformers' `ContinuousBatchingManager` and resolves it from its results."""

    def __init__(self, engine: Any, max_queue: int = 256) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.in_flight = 0
        self.manager: Any = None

    def full(self) -> bool:
        """True when `max_queue` requests are already being decoded or waiting for a slot."""
        return self.in_flight >= self.max_queue

    def start(self) -> None:
        """Create and start the manager (greedy; stops at the model's end-of-turn tokens)."""
        from transformers import GenerationConfig

        config = GenerationConfig(do_sample=False, max_new_tokens=128, eos_token_id=self.engine.stop_ids, pad_token_id=self.engine.pad_id)
        self.manager = self.engine.model.init_continuous_batching(generation_config=config)
        self.manager.start()

    def stop(self) -> None:
        """Stop the manager's generation thread."""
        if self.manager is not None:
            self.manager.stop(block=True, timeout=10)

    def submit(self, job: Job) -> asyncio.Future:
        """Add `job` to the running batch; the future resolves to its BatchRow (or the manager's error)."""
        job.done = asyncio.get_running_loop().create_future()
        request_id = uuid.uuid4().hex
        sent = [""]

        def on_output(output: Any) -> None:
            tokens, _ = split_at_stop(list(output.generated_tokens), self.engine.stop_ids)
            text = self.engine.tokenizer.decode(tokens, skip_special_tokens=True)
            if job.stream and output.error is None and text.startswith(sent[0]) and len(text) > len(sent[0]):
                job.pieces.put_nowait(text[len(sent[0]):])
                sent[0] = text
            if not (output.is_finished() or output.error is not None):
                return
            self.in_flight -= 1
            job.pieces.put_nowait(None)
            if job.done.done():
                return
            if output.error is not None:
                job.done.set_exception(RuntimeError(output.error))
            else:
                ended = len(tokens) < len(output.generated_tokens) and len(tokens) < job.options.max_new_tokens
                job.done.set_result(BatchRow(tokens, text, "stop" if ended else "length"))

        self.in_flight += 1
        self.manager.register_result_handler(request_id, on_output)  # before adding: a fast result must find it
        self.manager.add_request(job.ids, request_id=request_id, max_new_tokens=job.options.max_new_tokens,
                                 streaming=job.stream, eos_token_id=self.engine.stop_ids)
        return job.done

    async def serve_forever(self) -> None:
        """Keep the manager running until cancelled (results arrive on the event loop by callback)."""
        try:
            await asyncio.Event().wait()
        finally:
            self.stop()
