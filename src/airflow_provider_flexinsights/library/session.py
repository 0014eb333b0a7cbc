"""The SST/TT lifecycle and request retries, written once for both sync and async code.

Everything here is a *flow*: a generator that yields effects (a request to :class:`Send`, a
:class:`Sleep`, a :class:`Secret` to mask) and receives the transport's
:class:`~.protocol.Reply`. The sync transport (``requests``, in workers) and the async transport
(``aiohttp``, in the triggerer) each run flows with a short loop (:mod:`.transport`), so token
refresh, re-login, backoff and error mapping exist once. A transport that fails to reach the
server throws :class:`TransportError` into the flow, which treats it like any retryable failure.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.backoff import PollSchedule, RetryPolicy
from airflow_provider_flexinsights.library.exceptions import (
    FlexInsightsError,
    FlexInsightsTransientError,
)
from airflow_provider_flexinsights.library.protocol import Auth, Credentials, Reply, Request, Verdict

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    """Effect: wait this many seconds (``time.sleep`` or ``asyncio.sleep``, the transport's choice)."""

    seconds: float


@dataclass(frozen=True)
class Send:
    """Effect: send ``request`` with these extra headers (tokens live here, never in a repr)."""

    request: Request
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Secret:
    """Effect: hand a freshly minted SST to the secret masker before anything can log it.

    Only the SST, one per login: Airflow's masker keeps every value for the life of the process
    and recompiles one regular expression over all of them, so a TT (a new one every 10 minutes
    of waiting) registered there would grow a triggerer without bound. The TT is kept as a
    :class:`Token` instead, which no message, log line or repr can show (docs/reliability.md).
    """

    value: str = field(repr=False)


class Token:
    """A token that never prints: ``str()``, ``repr()`` and f-strings give ``***``.

    Only :meth:`Session._authorize` reveals it, into the headers of a :class:`Send` (themselves
    hidden from repr), so the one place a token leaves the session is the request that needs it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Token(***)"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"


Effect = Send | Sleep | Secret
Flow = Generator[Effect, Any, T]
"""A generator yielding effects, receiving a Reply after each Send, returning a T."""


# The retries of a session given no policy: 5 tries, waits of at most 1, 2, 4, 8 s (jittered).
DEFAULT_RETRY = RetryPolicy()
# Logging out deletes the SST, so it is retried like any request, but briefly: a task or a
# triggerer shutting down must not be held up long by an unreachable server.
_LOGOUT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_total_wait=5.0)
# How often a flow waiting for another flow's token renewal looks again (event loop only).
_RENEWAL_WAIT = 0.02
# Polls of an answer given later (202): quick at first, since metadata lookups are short.
FOLLOW_SCHEDULE = PollSchedule(first=0.2, cap=5.0)
MAX_FOLLOWS = 60
# Redirects followed for one request (the service answers one: 303 or 307); more is a loop.
MAX_REDIRECTS = 5
# Tokens a session remembers for :meth:`Session.scrub`: the live SST and TT, and a few before them.
_HELD_TOKENS = 6


class TransportError(Exception):
    """The server could not be reached or the connection broke; raised *into* flows by transports.

    The message is a few words naming the host (``127.0.0.1:8080 refused the connection``), never
    an HTTP library's text; ``advice`` ends the final error once the retries are spent.
    """

    def __init__(self, reason: str, *, advice: str = "check the network to the host") -> None:
        super().__init__(reason)
        self.advice = advice


class Session:
    """One login: owns the SST and TT, refreshes them on 401, retries transient failures.

    Tokens are created lazily by the first request that needs them. The SST is yielded as a
    :class:`Secret` effect (the transport masks it) before anything else can see it; each TT is a
    :class:`Token`. :meth:`scrub` takes any token this session held out of a text, for messages
    built from what the server said. :meth:`log_out` deletes the SST on the server, which also
    invalidates its TTs.
    """

    def __init__(
        self,
        credentials: Credentials,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``base_url``: where every server-supplied location must stay (:func:`.protocol.follow`)."""
        self._credentials = credentials
        self.base_url = base_url
        self._retry = retry or DEFAULT_RETRY
        self._login: protocol.Login | None = None
        self._tt: Token | None = None
        self._renewing = False
        self._held: collections.deque[str] = collections.deque(maxlen=_HELD_TOKENS)
        self.logins = 0
        self.renewals = 0  # TTs minted: what a long-running triggerer does every 10 minutes

    def scrub(self, text: str) -> str:
        """``text`` with every token this session recently held replaced by ``***``: a server
        that echoes a token into an error message or a header cannot get it into a log line."""
        for value in self._held:
            text = text.replace(value, "***")
        return text

    def send(self, request: Request, *, passthrough: frozenset[int] = frozenset()) -> Flow[Reply]:
        """Send ``request`` with the tokens it needs and return the reply, or raise its error.

        On a 401 the stale token is dropped and the request repeated once: a TT is re-minted from
        the SST, and a gone SST means a new login (which the TT request's own 401 reveals).
        A redirect (303, 307) is followed on the same host with the tokens attached again, at most
        :data:`MAX_REDIRECTS` times. Statuses in ``passthrough`` are returned instead of raised.
        """
        _, reply = yield from self._send_redirected(request, passthrough)
        return reply

    def _send_redirected(self, request: Request, passthrough: frozenset[int]) -> Flow[tuple[Request, Reply]]:
        """Send, following redirects; the request that got the final answer, and that answer."""
        for _ in range(MAX_REDIRECTS + 1):
            reply = yield from self._send_authorized(request, passthrough)
            target = protocol.redirect_target(request, reply, self.base_url)
            if target is None:
                return request, reply
            request = target
        raise protocol.error_for(request, reply, hint=f"It redirected more than {MAX_REDIRECTS} times.")

    def _send_authorized(self, request: Request, passthrough: frozenset[int]) -> Flow[Reply]:
        refreshed = False
        while True:
            yield from self._ensure_tokens(request.auth)
            sent = self._authorize(request)
            reply = yield from self._exchange(sent)
            verdict = protocol.judge(request, reply)
            if verdict is Verdict.OK or reply.status in passthrough:
                return reply
            if verdict in (Verdict.TT_EXPIRED, Verdict.SST_EXPIRED) and not refreshed:
                refreshed = True
                self._forget(verdict, sent)
                log.info("Flex Insights answered 401 (%s); renewing, repeating once.", verdict.value)
                continue
            raise protocol.error_for(request, reply)

    @property
    def email(self) -> str:
        """The login this session acts as: what a workspace shows depends on the user."""
        return self._credentials.email

    # --- answers given later: 202 Accepted, polled where it says -------------------------------

    def send_following(self, request: Request, *, schedule: PollSchedule = FOLLOW_SCHEDULE) -> Flow[Reply]:
        """Send ``request``, then poll its answer while it is 202, on ``schedule``.

        Each poll goes through :meth:`send`, so redirects, token renewal and retries apply to it as
        to any request; it goes where the 202 points, else to the URI the 202 came from.
        """
        sent, reply = yield from self._send_redirected(request, frozenset())
        delays = schedule.delays()
        for poll in itertools.count(1):
            next_request = protocol.poll_target(sent, reply, self.base_url)
            if next_request is None:
                return reply
            if poll > MAX_FOLLOWS:
                raise FlexInsightsTransientError(
                    f"Flex Insights could not {request.action}: the answer was not ready after "
                    f"{MAX_FOLLOWS} polls. Retrying the task later may work."
                )
            yield Sleep(next(delays))
            sent, reply = yield from self._send_redirected(next_request, frozenset())
        raise AssertionError("unreachable")  # pragma: no cover

    def log_out(self) -> Flow[None]:
        """Delete the SST on the server. Never raises: a failed logout must not fail an export.

        The service wants a valid TT beside the SST: a stale TT gets the TT challenge, so the TT
        is renewed and the DELETE repeated once. An SST challenge means the SST is already gone.
        """
        if self._login is None:
            return
        while self._renewing:
            yield Sleep(_RENEWAL_WAIT)
        request = protocol.logout(self._login.profile_id)
        verdict, status = Verdict.OK, 204
        try:
            for attempt in (1, 2):
                if self._tt is None and (yield from self._mint_temporary_token()) is not None:
                    return  # the SST is gone already: nothing left to delete
                reply = yield from self._exchange(self._authorize(request), _LOGOUT_RETRY)
                verdict, status = protocol.judge(request, reply), reply.status
                if verdict is not Verdict.TT_EXPIRED or attempt == 2:
                    break
                log.info("Flex Insights logout met a stale TT; renewing it and logging out again.")
                self._tt = None
        except FlexInsightsError as err:
            log.warning(
                "Could not log out of Flex Insights (%s); the SST will expire on its own.",
                self.scrub(str(err)),
            )
            return
        finally:
            self._login, self._tt = None, None
        if verdict is not Verdict.OK and verdict is not Verdict.SST_EXPIRED:
            log.warning("Flex Insights logout answered HTTP %s; the SST will expire on its own.", status)

    # --- tokens -------------------------------------------------------------------------------

    def _ensure_tokens(self, auth: Auth) -> Flow[None]:
        """Have the tokens ``auth`` needs. Single-flight: flows sharing this session on one event
        loop wait for the renewal already under way instead of logging in or minting again."""
        if auth is Auth.NONE:
            return
        while self._renewing:
            yield Sleep(_RENEWAL_WAIT)
        if self._login is not None and (auth is Auth.SST or self._tt is not None):
            return
        self._renewing = True
        try:
            yield from self._renew(auth)
        finally:
            self._renewing = False

    def _renew(self, auth: Auth) -> Flow[None]:
        for attempt in (1, 2):  # a TT request that finds the SST gone logs in again, once
            if self._login is None:
                yield from self._log_in()
            if auth is Auth.SST:
                return
            refused = yield from self._mint_temporary_token()
            if refused is None:
                return
            if attempt == 2:
                raise protocol.error_for(protocol.mint_temporary_token(), refused)
            log.info("Flex Insights SST expired; logging in again.")
            self._login = None

    def _mint_temporary_token(self) -> Flow[Reply | None]:
        """Mint a TT from the SST: None when done, the refusal when the SST is gone, else raise."""
        request = protocol.mint_temporary_token()
        reply = yield from self._exchange(self._authorize(request))
        verdict = protocol.judge(request, reply)
        if verdict is Verdict.OK:
            self._tt = self._hold(protocol.read_temporary_token(reply))
            self.renewals += 1
            return None
        if verdict is not Verdict.SST_EXPIRED:
            raise protocol.error_for(request, reply)
        return reply

    def _log_in(self) -> Flow[None]:
        request = protocol.login(self._credentials.email, self._credentials.password)
        reply = yield from self._exchange(Send(request))
        if protocol.judge(request, reply) is not Verdict.OK:
            raise protocol.error_for(request, reply)
        self._login = protocol.read_login(reply)
        self._hold(self._login.sst)
        yield Secret(self._login.sst)
        self.logins += 1

    def _hold(self, value: str) -> Token:
        self._held.append(value)
        return Token(value)

    def _forget(self, verdict: Verdict, sent: Send) -> None:
        """Drop the tokens a rejected request carried, unless another flow has renewed them since."""
        if self._tt is not None and self._tt.reveal() == sent.headers.get(protocol.TT_HEADER):
            self._tt = None
        sst = sent.headers.get(protocol.SST_HEADER)
        if verdict is Verdict.SST_EXPIRED and self._login is not None and self._login.sst == sst:
            self._login, self._tt = None, None

    def _authorize(self, request: Request) -> Send:
        headers: dict[str, str] = {}
        if request.auth is not Auth.NONE and self._login is not None:
            headers[protocol.SST_HEADER] = self._login.sst
        if request.auth is not Auth.NONE and self._tt is not None:
            headers[protocol.TT_HEADER] = self._tt.reveal()
        return Send(request, headers)

    # --- retries ------------------------------------------------------------------------------

    def _exchange(self, send: Send, policy: RetryPolicy | None = None) -> Flow[Reply]:
        """Send once, and again after a backoff while the failure is transient (429, 5xx, network)."""
        request, waited, policy = send.request, 0.0, policy or self._retry
        for attempt in itertools.count(1):
            reply: Reply | None = None
            try:
                reply = yield send
            except TransportError as err:
                failure, advice, server_asked = str(err), err.advice, None
            else:
                if protocol.judge(request, reply) is not Verdict.RETRY:
                    return reply
                failure, advice = self.scrub(_status_of(reply)), ""
                server_asked = protocol.retry_after(reply)
            delay = policy.delay(attempt, server_asked)
            if attempt >= policy.max_attempts or waited + delay > policy.max_total_wait:
                if reply is not None:
                    return reply  # the caller maps the final status to a typed error
                raise FlexInsightsTransientError(
                    f"Flex Insights could not {request.action}: {failure} ({attempt} tries); {advice}."
                )
            log.warning(
                "Flex Insights could not %s (%s); retry %d in %.1f s.",
                request.action,
                failure,
                attempt,
                delay,
            )
            waited += delay
            yield Sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


def _status_of(reply: Reply) -> str:
    """``HTTP 503, request id abc`` for a retry's log line (no request id when the server sent none)."""
    request_id = f", request id {reply.request_id}" if reply.request_id else ""
    return f"HTTP {reply.status}{request_id}"
