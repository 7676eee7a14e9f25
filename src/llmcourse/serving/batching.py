"""Dynamic batching for the HTTP server. A transformers model decodes one `generate` call at a time;
requests that arrive meanwhile wait, and the next call decodes up to `max_batch` of them together
(left-padded, each with its own token limit), so a burst of 32 costs about what one request does on
a small model. Requests batch together when they decode alike (same strategy, temperature, top_p);
a sampled request with its own `seed` runs alone, so that seed repeats its answer. Beyond
`max_queue` waiting requests the server refuses with 503 rather than pile up. When a batch's
`generate` fails, its requests are decoded again one by one, so one bad request fails alone."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Hashable

from llmcourse.generation.strategies import DecodeOptions, Strategy

log = logging.getLogger("llmcourse.serve")


@dataclass
class Job:
    """One request: its prompt, how to decode it, and where its text goes."""

    ids: list[int]
    strategy: Strategy
    options: DecodeOptions
    seed: int | None = None
    stream: bool = False
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)  # text pieces, then None
    done: asyncio.Future | None = None  # the BatchRow
    streamed: bool = False  # some text already went to the client
    alone: bool = False  # decode in a batch of its own (after its batch failed)

    def batch_key(self) -> Hashable:
        """Jobs with equal keys can share one `generate` call."""
        if self.alone or (self.strategy.samples and self.seed is not None):
            return ("alone", id(self))
        return (self.strategy.name, replace(self.options, max_new_tokens=0))


class Batcher:
    """Queues jobs and decodes them in batches on a worker thread, one batch at a time."""

    def __init__(self, engine: Any, max_batch: int = 32, max_queue: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.pending: list[Job] = []
        self.wake: asyncio.Event | None = None

    def full(self) -> bool:
        """True when one more waiting request would exceed the queue."""
        return len(self.pending) >= self.max_queue

    def submit(self, job: Job) -> asyncio.Future:
        """Queue `job` (the caller checked `full` first); the future resolves to its BatchRow."""
        job.done = asyncio.get_running_loop().create_future()
        self.pending.append(job)
        if self.wake is not None:
            self.wake.set()
        return job.done

    def take_batch(self) -> list[Job]:
        """The oldest waiting job and, in arrival order, up to `max_batch - 1` more that decode like it."""
        key = self.pending[0].batch_key()
        batch = [job for job in self.pending if job.batch_key() == key][: self.max_batch]
        taken = {id(job) for job in batch}
        self.pending = [job for job in self.pending if id(job) not in taken]
        return batch

    async def serve_forever(self) -> None:
        """Decode batches until cancelled (run as a task for the server's lifetime)."""
        from starlette.concurrency import run_in_threadpool

        loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        while True:
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
            batch = self.take_batch()
            try:
                rows = await run_in_threadpool(self.decode, batch, loop)
            except Exception as exc:  # one bad request must not fail its batch-mates, nor stop the server
                if len(batch) == 1:
                    log.exception("generation failed")
                    self.finish(batch[0], error=exc)
                    continue
                retry = [job for job in batch if not job.streamed]
                for job in batch:
                    job.alone = True
                    if job.streamed:  # its client has part of an answer: it cannot start again
                        self.finish(job, error=exc)
                self.pending[:0] = retry
                continue
            for job, row in zip(batch, rows):
                self.finish(job, row=row)

    @staticmethod
    def finish(job: Job, row: Any = None, error: Exception | None = None) -> None:
        """End `job`'s stream and resolve its future (unless its client went away and cancelled it)."""
        job.pieces.put_nowait(None)
        if not job.done.done():
            if error is not None:
                job.done.set_exception(error)
            else:
                job.done.set_result(row)

    def decode(self, batch: list[Job], loop: asyncio.AbstractEventLoop) -> list[Any]:
        """One `generate` call for the batch (on the worker thread)."""
        streams = {index: job for index, job in enumerate(batch) if job.stream}

        def on_text(row: int, piece: str) -> None:
            if row in streams:
                streams[row].streamed = True
                loop.call_soon_threadsafe(streams[row].pieces.put_nowait, piece)

        first = batch[0]
        return self.engine.generate_batch([job.ids for job in batch], first.strategy, first.options,
                                          [job.options.max_new_tokens for job in batch], first.seed,
                                          on_text if streams else None)
