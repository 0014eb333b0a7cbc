"""Run flows over real HTTP: ``requests`` in workers, ``httpx.AsyncClient`` in the triggerer.

A transport knows how to send a request and how to sleep; every decision is in the flow it runs.
Redirects are never followed, so tokens (sent as headers) cannot be forwarded to another host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_flexinsights.protocol import Reply
from airflow_provider_flexinsights.session import Effect, Flow, Secret, Send, Sleep, TransportError

if TYPE_CHECKING:
    import requests

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0
DOWNLOAD_CHUNK_SIZE = 1 << 20
ASYNC_CONNECTIONS = 20  # per triggerer session: plenty for polls, gentle on the API


def _user_agent(library: str) -> str:
    from airflow_provider_flexinsights import __version__

    return f"airflow-provider-flexinsights/{__version__} ({library})"


def _headers(send: Send) -> dict[str, str]:
    return {"Accept": "application/json", **send.headers}


Outcome = Reply | TransportError | None
"""What performing an effect produced: a reply, a failure to reach the server, or nothing (a sleep)."""


def _resume(flow: Flow[T], outcome: Outcome) -> Effect:
    """Hand the outcome of the last effect back to the flow; get its next effect."""
    if isinstance(outcome, TransportError):
        return flow.throw(outcome)
    return flow.send(outcome)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


class SyncTransport:
    """Runs flows with blocking I/O on one pooled ``requests.Session``.

    :param on_secret: registers a token with the secret masker (Airflow's ``mask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], None]) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        self._http = requests.Session()
        self._http.headers["User-Agent"] = _user_agent("requests")

    def run(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, Secret):
            self._on_secret(effect.value)
            return None
        try:
            return self._send(effect)
        except TransportError as err:
            return err

    def _send(self, send: Send) -> Reply:
        import requests

        request = send.request
        try:
            response = self._http.request(
                request.method,
                self.base_url + request.path,
                json=request.json,
                headers=_headers(send),
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            if response.status_code == 200 and request.success_body == "stream":
                return Reply(response.status_code, response.headers, stream=response)
            with response:
                skip = response.status_code == 200 and request.success_body == "discard"
                body = b"" if skip else response.content
            return Reply(response.status_code, response.headers, body)
        except requests.RequestException as err:
            raise TransportError(_describe(err)) from err

    @staticmethod
    @contextmanager
    def open_body(reply: Reply) -> Iterator[Iterator[bytes]]:
        """Chunks of a body fetched with ``success_body="stream"``; the response closes on exit."""
        response: requests.Response = reply.stream
        with response:
            yield _chunks(response)

    def close(self) -> None:
        self._http.close()


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body in chunks; a broken stream (reset, truncated chunking, timeout) is a TransportError."""
    import requests

    received = 0
    try:
        for chunk in response.iter_content(chunk_size=DOWNLOAD_CHUNK_SIZE):
            received += len(chunk)
            yield chunk
    except requests.RequestException as err:
        raise TransportError(f"{_describe(err)}, after {received:,} bytes") from err


class AsyncTransport:
    """Runs flows on the event loop with one ``httpx.AsyncClient`` connection pool.

    Requests in flight are capped at the pool's size by a semaphore: when a thousand triggers
    share one session, the others wait on the semaphore (cheap) rather than in httpcore's pool
    queue, whose bookkeeping grows with the queue (it cost 18 ms of CPU per poll at 1,000 waiters).

    :param on_secret: registers a token with the secret masker without blocking the loop
        (Airflow's ``amask_secret``).
    """

    def __init__(self, base_url: str, on_secret: Callable[[str], Awaitable[None]]) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._on_secret = on_secret
        self._http = httpx.AsyncClient(
            headers={"User-Agent": _user_agent("httpx")},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(
                max_connections=ASYNC_CONNECTIONS, max_keepalive_connections=ASYNC_CONNECTIONS
            ),
            follow_redirects=False,
        )
        self._in_flight = asyncio.Semaphore(ASYNC_CONNECTIONS)

    async def run(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                effect = _resume(flow, await self._perform(effect))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _perform(self, effect: Effect) -> Outcome:
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, Secret):
            await self._on_secret(effect.value)
            return None
        try:
            async with self._in_flight:
                return await self._send(effect)
        except TransportError as err:
            return err

    async def _send(self, send: Send) -> Reply:
        import httpx

        request = send.request
        try:
            built = self._http.build_request(
                request.method, self.base_url + request.path, json=request.json, headers=_headers(send)
            )
            response: Any = await self._http.send(built, stream=True)
            if response.status_code == 200 and request.success_body == "stream":
                return Reply(response.status_code, response.headers, stream=response)
            try:
                skip = response.status_code == 200 and request.success_body == "discard"
                body = b"" if skip else await response.aread()
            finally:
                await response.aclose()
            return Reply(response.status_code, response.headers, body)
        except httpx.HTTPError as err:
            raise TransportError(_describe(err)) from err

    async def close(self) -> None:
        await self._http.aclose()
