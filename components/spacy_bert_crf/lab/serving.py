"""Serve a pipeline over HTTP: FastAPI, micro-batching, limits, metrics and a page to try it.

    POST /v1/ents   {"text": "..."} or {"texts": ["...", ...]}
                    → {"results": [{"ents": [{"start", "end", "label", "text", "probability"}, ...]}, ...]}
    GET  /          a page with a text box that shows the entities in displaCy's markup
    GET  /healthz   200 while the process serves
    GET  /readyz    200 once the model is loaded, 503 before (or if loading failed)
    GET  /metrics   Prometheus text: requests, errors, batch sizes, latency, characters tagged
    GET  /docs      the OpenAPI schema, as FastAPI renders it

Offsets are in characters (code points) of the text as sent; each entity's
probability is its marginal under the CRF, from `doc.spans["ents"]`.

Micro-batching: the requests that arrive while the model is busy, or within
`max_wait_ms` of each other while another batch is in flight, are tagged by
one `nlp.pipe` call; a batch ends at `max_batch_texts` texts or
`max_batch_chars` characters (whole requests: a request is never split).
`max_batch_texts = 1` tags each request alone, which is micro-batching off.
The model runs in `workers` processes (TaggerPool), one batch each at a time,
so that the event loop keeps accepting requests meanwhile.

Limits answer with a status and a message, never a crash: a body over
`max_body_bytes` or a text over `max_text_chars` is 413, bad JSON or a field
of the wrong type 422 (FastAPI's validation error names the field), a full
queue 503, a request not answered within `request_timeout_s` 504.
"""

import asyncio
import json
import os
import re
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set

import spacy
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from spacy.displacy.templates import TPL_ENT
from spacy.language import Language

from ..pipe import BertCrfNer
from .annotation import doc_entities
from .visualize import DEFAULT_COLOR, LABEL_COLORS

ENTS_PATH = "/v1/ents"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ServeSettings:
    """The server's knobs (scripts/serve.py's options, project.yml's serve_* vars)."""

    max_batch_texts: int = 32
    max_batch_chars: int = 20_000
    max_wait_ms: float = 5.0
    max_body_bytes: int = 2_000_000
    max_text_chars: int = 100_000
    max_texts: int = 256
    max_queued_texts: int = 4096
    request_timeout_s: float = 30.0
    # Processes with the model loaded, each tagging one batch at a time, on
    # `threads_per_worker` torch threads (0: the machine's cores ÷ workers).
    workers: int = 2
    threads_per_worker: int = 0

    def __post_init__(self):
        for name in ("max_batch_texts", "max_batch_chars", "max_body_bytes", "max_text_chars", "max_texts", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be ≥ 0 and request_timeout_s > 0")


class Entity(BaseModel):
    start: int = Field(description="Offset of the first character, in code points of the text")
    end: int = Field(description="Offset after the last character")
    label: str
    text: str
    probability: Optional[float] = Field(description="The entity's marginal probability under the CRF")


class TextEntities(BaseModel):
    ents: List[Entity]


class EntsRequest(BaseModel):
    """One text, or a list of texts: exactly one of the two fields."""

    model_config = ConfigDict(extra="forbid")
    text: Optional[str] = Field(None, description="A text to tag")
    texts: Optional[List[str]] = Field(None, description="Texts to tag; the results come in the same order")

    @model_validator(mode="after")
    def exactly_one_field(self) -> "EntsRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' and 'texts'")
        return self

    @property
    def all_texts(self) -> List[str]:
        return [self.text] if self.text is not None else list(self.texts)


class EntsResponse(BaseModel):
    results: List[TextEntities] = Field(description="One per text, in the order of the request")


class Overloaded(RuntimeError):
    """More texts are waiting than `max_queued_texts`."""


@dataclass
class _Waiting:
    texts: List[str]
    future: asyncio.Future
    arrived: float
    chars: int


class TaggerPool:
    """Worker processes that each load the pipeline once and tag batches of texts with it.

    The model computes in processes of its own so that the server's event
    loop (HTTP parsing, JSON) and the pipe's Python-level steps do not take
    turns at one interpreter lock: measured in one process, the pipe took
    about 1.6 times as long per text on a worker thread under load as alone. `load`
    must be picklable (a module-level function, or a partial of one).
    Each worker computes on `threads` torch threads.
    """

    def __init__(self, load: Callable[[], Language], workers: int = 1, threads: int = 0):
        self.load = load
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=get_context("spawn"), initializer=_load_tagger, initargs=(self.load, self.threads)
        )

    async def start(self) -> None:
        """Start every worker, and return once one has loaded the pipeline."""
        loop = asyncio.get_running_loop()
        loading = [loop.run_in_executor(self._executor, _tag_in_worker, []) for _ in range(self.workers)]
        done, _ = await asyncio.wait(loading, return_when=asyncio.FIRST_COMPLETED)
        done.pop().result()

    async def tag(self, texts: List[str]) -> List[List[Dict[str, Any]]]:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, _tag_in_worker, texts)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): its batch fails, and new workers take over,
            # once: the other batches in flight on the broken pool fail too.
            if executor is self._executor:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            raise

    def worker_pids(self) -> List[int]:
        """The process ids of the workers running now."""
        return list(self._executor._processes or {})

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_worker_tagger: Optional[Callable[[List[str]], List[List[Dict[str, Any]]]]] = None
_worker_load_error: Optional[str] = None


def _load_tagger(load: Callable[[], Language], threads: int) -> None:
    global _worker_tagger, _worker_load_error
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    torch.set_num_threads(threads)
    try:
        _worker_tagger = entity_tagger(load())
    except Exception as error:
        # Raised by every task instead: an initializer's own exception would only break the pool, unexplained.
        _worker_load_error = f"{type(error).__name__}: {error}"


def _exit_with_parent(parent: int) -> None:
    """A worker whose server died without shutting it down (SIGKILL) would live on, holding the model's memory."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _tag_in_worker(texts: List[str]) -> List[List[Dict[str, Any]]]:
    if _worker_tagger is None:
        raise RuntimeError(f"The worker could not load the pipeline: {_worker_load_error}")
    return _worker_tagger(texts)


class MicroBatcher:
    """Gathers concurrent requests into batches for `tag`, with up to `concurrency` batches in flight.

    `tag` is a coroutine function from a list of texts to one result per
    text. `observe` hears of each batch: its texts, characters and seconds.
    """

    def __init__(
        self,
        tag: Callable[[List[str]], Awaitable[List[Any]]],
        settings: ServeSettings,
        observe: Callable[[int, int, float], None] = lambda texts, chars, seconds: None,
        concurrency: int = 1,
    ):
        self.tag_batch = tag
        self.settings = settings
        self.observe = observe
        self.queued_texts = 0
        self._waiting: Deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(concurrency)
        self._task: Optional[asyncio.Task] = None
        self._in_flight: Set[asyncio.Task] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [task for task in (self._task, *self._in_flight) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tag(self, texts: List[str]) -> List[Any]:
        """The results for `texts`, tagged in a batch with whatever else is waiting."""
        if self.queued_texts and self.queued_texts + len(texts) > self.settings.max_queued_texts:
            raise Overloaded(f"{self.queued_texts} texts are waiting to be tagged; try again shortly")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(_Waiting(texts, future, loop.time(), sum(map(len, texts))))
        self.queued_texts += len(texts)
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A batch is gathered once a worker is free for it, so that it holds everything waiting then.
            await self._free.acquire()
            batch = await self._next_batch()
            task = loop.create_task(self._tag(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _tag(self, batch: List[_Waiting]) -> None:
        texts = [text for waiting in batch for text in waiting.texts]
        started = time.perf_counter()
        try:
            results = await self.tag_batch(texts)
        except Exception as error:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
        else:
            offset = 0
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_result(results[offset : offset + len(waiting.texts)])
                offset += len(waiting.texts)
            self.observe(len(texts), sum(waiting.chars for waiting in batch), time.perf_counter() - started)
        finally:
            self.queued_texts -= len(texts)
            self._free.release()

    async def _next_batch(self) -> List[_Waiting]:
        """Whole requests, oldest first, until the batch is full or its oldest has waited `max_wait_ms`.

        Under load, the requests that came in while the last batch ran have
        waited already, so the next batch starts at once. With no batch in
        flight there is nothing to wait for: the batch goes at once, and what
        comes in meanwhile gathers for the next."""
        loop = asyncio.get_running_loop()
        batch: List[_Waiting] = []
        n_texts = n_chars = 0
        deadline = None
        while True:
            while self._waiting:
                waiting = self._waiting[0]
                if waiting.future.done():  # its request timed out or went away
                    self._waiting.popleft()
                    self.queued_texts -= len(waiting.texts)
                    continue
                if batch and (
                    n_texts + len(waiting.texts) > self.settings.max_batch_texts
                    or n_chars + waiting.chars > self.settings.max_batch_chars
                ):
                    return batch
                self._waiting.popleft()
                batch.append(waiting)
                n_texts += len(waiting.texts)
                n_chars += waiting.chars
                if deadline is None:
                    deadline = waiting.arrived + self.settings.max_wait_ms / 1000
            if batch and (n_texts >= self.settings.max_batch_texts or loop.time() >= deadline or not self._in_flight):
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), None if deadline is None else deadline - loop.time())
            except asyncio.TimeoutError:
                return batch


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of its own (so that apps in one process stay apart)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ner_requests", "HTTP requests by path and status code", ["path", "code"], registry=self.registry
        )
        self.errors = Counter(
            "ner_errors", "HTTP responses with status 400 or more", ["path", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "ner_request_seconds", f"Latency of POST {ENTS_PATH}", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_texts = Histogram(
            "ner_batch_texts", "Texts per nlp.pipe call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "ner_batch_seconds", "Seconds per nlp.pipe call", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.chars = Counter("ner_chars_tagged", "Characters tagged", registry=self.registry)

    def observe_request(self, path: str, code: int, seconds: float) -> None:
        self.requests.labels(path, str(code)).inc()
        if code >= 400:
            self.errors.labels(path, str(code)).inc()
        if path == ENTS_PATH:
            self.latency.observe(seconds)

    def observe_batch(self, texts: int, chars: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_seconds.observe(seconds)
        self.chars.inc(chars)


class RequestMetrics:
    """ASGI middleware: counts every response by path and status, and times it."""

    def __init__(self, app, metrics: ServerMetrics, paths: List[str]):
        self.app = app
        self.metrics = metrics
        self.paths = set(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # Unknown paths share one label, so that a scan cannot grow the metrics without end.
            path = scope["path"] if scope["path"] in self.paths else "other"
            self.metrics.observe_request(path, status, time.perf_counter() - started)


class BodyLimit:
    """ASGI middleware: answers 413 to a request body over `max_bytes`, declared or streamed, before parsing it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _error(400, "Content-Length is not a number")(scope, receive, send)
            if int(declared) > self.max_bytes:
                return await self._too_large(scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        message = f"The request body is larger than the server's limit of {self.max_bytes} bytes (max_body_bytes)"
        await _error(413, message)(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


@dataclass
class ServerState:
    """What the app knows of its model: loaded or not, and the batcher once it is."""

    name: str
    batcher: Optional[MicroBatcher] = None
    pool: Optional[TaggerPool] = None
    load_error: Optional[str] = None
    loading: Optional[asyncio.Task] = field(default=None, repr=False)


def entity_tagger(nlp: Language) -> Callable[[List[str]], List[List[Dict[str, Any]]]]:
    """A function from texts to each text's entities (annotation.doc_entities), through one `nlp.pipe` call."""
    spans_keys = [pipe.spans_key for _, pipe in nlp.pipeline if isinstance(pipe, BertCrfNer)]
    spans_key = spans_keys[0] if spans_keys else None

    def tag(texts: List[str]) -> List[List[Dict[str, Any]]]:
        return [doc_entities(doc, spans_key) for doc in nlp.pipe(texts, batch_size=max(1, len(texts)))]

    return tag


def create_app(load: Callable[[], Language], settings: ServeSettings = ServeSettings(), name: str = "") -> FastAPI:
    """The FastAPI app. `load` (picklable) returns the pipeline; the workers run it once the
    app starts, and `/readyz` says 200 when the first of them has loaded it."""
    state = ServerState(name=name)
    metrics = ServerMetrics()

    async def load_and_start():
        state.pool = TaggerPool(load, settings.workers, settings.threads_per_worker)
        try:
            await state.pool.start()
        except Exception as error:
            state.load_error = f"{type(error).__name__}: {error}"
            raise
        state.batcher = MicroBatcher(state.pool.tag, settings, metrics.observe_batch, concurrency=settings.workers)
        state.batcher.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loading = asyncio.create_task(load_and_start())
        yield
        state.loading.cancel()
        await asyncio.gather(state.loading, return_exceptions=True)
        if state.batcher is not None:
            await state.batcher.stop()
        if state.pool is not None:
            state.pool.close()

    app = FastAPI(
        title="zh_bert_crf_ner",
        description="Chinese named entities from a BERT + CRF spaCy pipeline, with each entity's probability.",
        lifespan=lifespan,
    )
    app.state.server = state

    @app.post(ENTS_PATH, response_model=EntsResponse, responses={413: {}, 500: {}, 503: {}, 504: {}})
    async def ents(request: EntsRequest) -> Dict[str, Any]:
        """The entities of each text: character offsets, label, text and probability."""
        texts = request.all_texts
        if len(texts) > settings.max_texts:
            raise HTTPException(
                413, f"{len(texts)} texts in one request; the limit is {settings.max_texts} (max_texts)"
            )
        for i, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                where = "text" if request.text is not None else f"texts[{i}]"
                raise HTTPException(
                    413,
                    f"{where} has {len(text)} characters; the limit is {settings.max_text_chars} (max_text_chars)",
                )
        if state.batcher is None:
            raise HTTPException(503, "The model is not loaded yet; /readyz says when it is")
        try:
            results = await asyncio.wait_for(state.batcher.tag(texts), settings.request_timeout_s)
        except Overloaded as error:
            raise HTTPException(503, str(error)) from None
        except asyncio.TimeoutError:
            raise HTTPException(504, f"Not tagged within {settings.request_timeout_s} s (request_timeout_s)") from None
        except BrokenProcessPool:
            raise HTTPException(500, "The model's worker process died; new workers are starting: try again") from None
        # Returned as a response, FastAPI skips validating what annotation.doc_entities built;
        # `response_model` still documents it.
        return JSONResponse({"results": [{"ents": ents} for ents in results]})

    @app.get("/healthz")
    async def healthz() -> Dict[str, str]:
        """200 while the server runs, loaded or not."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {}})
    async def readyz():
        """200 once the model is loaded and requests are tagged; 503 before, or if it failed to load."""
        if state.batcher is not None:
            return {"status": "ready", "model": state.name}
        if state.load_error is not None:
            return JSONResponse({"status": "failed", "detail": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics():
        """Prometheus text exposition format."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = demo_page()

    @app.get("/", response_class=HTMLResponse)
    async def index():
        """A page to try the model: a text box, a button, and the entities in displaCy's markup."""
        return HTMLResponse(page)

    paths = [route.path for route in app.routes]
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: it counts the body limit's 413s too.
    app.add_middleware(RequestMetrics, metrics=metrics, paths=paths)
    return app


def demo_page() -> str:
    """The page at `/`, with displaCy's entity styles and the report's colours per label; no external resources."""
    mark_style, label_style = re.findall(r'style="([^"]*)"', TPL_ENT)
    settings = {
        "colors": LABEL_COLORS,
        "defaultColor": DEFAULT_COLOR,
        "markStyle": mark_style,
        "labelStyle": label_style,
        "path": ENTS_PATH,
    }
    template = resources.files(__package__).joinpath("serve_page.html").read_text(encoding="utf-8")
    # "</" would end the script element early; JSON allows it escaped.
    return template.replace("{{SETTINGS}}", json.dumps(settings, ensure_ascii=False).replace("</", "<\\/"))


def pipeline_path(model: str) -> Path:
    """The directory of a pipeline given as a path or an installed package's name."""
    path = Path(model)
    if path.is_dir():
        return path
    if spacy.util.is_package(model):
        package = spacy.util.get_package_path(model)
        meta = spacy.util.get_model_meta(package)
        return package / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    raise OSError(f"No pipeline at {model!r}: it is neither a directory nor an installed package")


def load_pipeline(model: str, quantize: bool = False) -> Language:
    """`spacy.load(model)`, with every `bert_crf_ner` pipe's `quantize` set when asked."""
    if not quantize:
        return spacy.load(model)
    config = spacy.util.load_config(pipeline_path(model) / "config.cfg")
    names = [name for name, component in config["components"].items() if component.get("factory") == "bert_crf_ner"]
    if not names:
        raise ValueError(f"{model} has no bert_crf_ner pipe to quantise")
    return spacy.load(model, config={"components": {name: {"quantize": True} for name in names}})


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: ServeSettings = ServeSettings(),
    quantize: bool = False,
    access_log: bool = True,
) -> None:
    """Serve `model` (a path or package name) with uvicorn until interrupted."""
    pipeline_path(model)  # a wrong name fails here, before the server starts
    app = create_app(partial(load_pipeline, model, quantize), settings, name=model)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
