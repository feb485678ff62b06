"""Load-test the server: a real HTTP client (aiohttp, asyncio) against a server process on 127.0.0.1.

`ServerProcess` starts `serving.serve` in a fresh process on a free port and
waits until `/readyz` says the model is loaded; `run_load` sends a bounded
number of requests from `concurrency` clients at once and times each one.
"""

import asyncio
import json
import math
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import aiohttp
import httpx2

from .serving import ENTS_PATH, ServeSettings, serve


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`serve(model, …)` in a spawned process, ready when the `with` block starts, stopped when it ends."""

    def __init__(
        self,
        model: str,
        settings: ServeSettings = ServeSettings(),
        quantize: bool = False,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        ready_timeout: float = 300,
        access_log: bool = False,
    ):
        self.model = model
        self.settings = settings
        self.quantize = quantize
        self.host = host
        self.port = port or free_port(host)
        self.ready_timeout = ready_timeout
        self.access_log = access_log
        self.process: Optional[multiprocessing.Process] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> "ServerProcess":
        self.process = multiprocessing.get_context("spawn").Process(
            target=serve,
            # Not a daemon: daemons may not start processes, and the server's workers are processes.
            args=(self.model, self.host, self.port, self.settings, self.quantize, self.access_log),
        )
        self.process.start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)  # uvicorn's graceful shutdown
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"The server for {self.model} exited with code {self.process.exitcode}")
            try:
                response = httpx2.get(f"{self.url}/readyz", timeout=2)
            except httpx2.TransportError:
                pass
            else:
                if response.status_code == 200:
                    return
                if response.json().get("status") == "failed":
                    raise RuntimeError(f"The server could not load {self.model}: {response.json()['detail']}")
            time.sleep(0.2)
        raise TimeoutError(f"The server for {self.model} was not ready within {self.ready_timeout} s")


@dataclass
class LoadResult:
    """What `run_load` saw: each request's latency and status, and the responses when kept."""

    concurrency: int
    seconds: float
    chars: int
    latencies: List[float] = field(repr=False)
    statuses: List[int] = field(repr=False)
    responses: List[Optional[Dict[str, Any]]] = field(repr=False)

    @property
    def errors(self) -> int:
        return sum(status != 200 for status in self.statuses)

    def summary(self) -> Dict[str, Any]:
        latencies = sorted(self.latencies)
        return {
            "requests": len(self.statuses),
            "concurrency": self.concurrency,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(len(self.statuses) / self.seconds, 2),
            "chars_per_s": round(self.chars / self.seconds, 1),
            **{f"p{q}_ms": round(1000 * percentile(latencies, q), 2) for q in (50, 95, 99)},
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    """The `q`-th percentile of sorted values, nearest rank."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def run_load(
    url: str,
    texts: Sequence[str],
    n_requests: int,
    concurrency: int,
    timeout: float = 120,
    keep_responses: bool = False,
) -> LoadResult:
    """Send `n_requests` POSTs of `{"text": texts[i % len(texts)]}` from `concurrency` clients at once."""
    return asyncio.run(_load(url, texts, n_requests, concurrency, timeout, keep_responses))


async def _load(url, texts, n_requests, concurrency, timeout, keep_responses) -> LoadResult:
    latencies = [0.0] * n_requests
    statuses = [0] * n_requests
    responses: List[Optional[Dict[str, Any]]] = [None] * n_requests
    next_request = iter(range(n_requests))

    async def client_loop(session: aiohttp.ClientSession) -> None:
        for i in next_request:
            started = time.perf_counter()
            try:
                async with session.post(ENTS_PATH, json={"text": texts[i % len(texts)]}) as response:
                    body = await response.read()
                    statuses[i] = response.status
                if keep_responses:
                    responses[i] = json.loads(body)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                statuses[i] = -1  # no response at all: counted as an error
            latencies[i] = time.perf_counter() - started

    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(url, connector=connector, timeout=client_timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    chars = sum(len(texts[i % len(texts)]) for i in range(n_requests))
    return LoadResult(concurrency, seconds, chars, latencies, statuses, responses)
