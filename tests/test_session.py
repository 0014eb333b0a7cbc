"""The session's flows against a scripted transport: no server, no sockets, no Airflow, no sleeping.

A flow yields effects (send this, sleep that, mask this token) and receives replies, so every
decision (token renewal, retry budgets, Retry-After) is checked here by feeding it answers in
order and reading back what it asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import pytest

from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.backoff import RetryPolicy
from airflow_provider_flexinsights.library.exceptions import FlexInsightsAuthError, FlexInsightsTransientError
from airflow_provider_flexinsights.library.protocol import Credentials, Reply
from airflow_provider_flexinsights.library.session import (
    Flow,
    Secret,
    Send,
    Session,
    Sleep,
    TransportError,
)

T = TypeVar("T")
NO_JITTER = RetryPolicy(max_attempts=5, base_delay=0.0, max_total_wait=300.0)


def answer(status: int, document: Any = None, **headers: str) -> Reply:
    body = json.dumps(document).encode() if document is not None else b""
    named = {name.replace("_", "-"): value for name, value in headers.items()}  # Retry_After: Retry-After
    return Reply(status, {"X-GDC-Request": f"req-{status}", **named}, body)


def logged_in(sst: str = "sst-1") -> Reply:
    return answer(200, {"userLogin": {"profile": "/gdc/account/profile/p1", "token": sst}})


def temporary_token(tt: str = "tt-1") -> Reply:
    return answer(200, {"userToken": {"token": tt}})


PROFILE = answer(200, {"accountSetting": {"login": "a@b.c"}})
TT_EXPIRED = answer(401, WWW_Authenticate="GDCAuthTT")
SST_EXPIRED = answer(401, WWW_Authenticate="GDCAuthSST")


class Script:
    """Plays a transport: answers each Send with the next scripted reply (or raises a network
    failure into the flow), records every effect, never really sleeps."""

    def __init__(self, answers: Iterable[Reply | TransportError]) -> None:
        self.answers = iter(answers)
        self.effects: list[Send | Sleep | Secret] = []

    def run(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                self.effects.append(effect)
                if not isinstance(effect, Send):
                    effect = flow.send(None)
                    continue
                scripted = next(self.answers)
                effect = flow.throw(scripted) if isinstance(scripted, TransportError) else flow.send(scripted)
        except StopIteration as done:
            result: T = done.value
            return result

    @property
    def sent(self) -> list[tuple[str, str]]:
        return [(e.request.method, e.request.path) for e in self.effects if isinstance(e, Send)]

    @property
    def slept(self) -> list[float]:
        return [e.seconds for e in self.effects if isinstance(e, Sleep)]

    def headers_of(self, index: int) -> dict[str, str]:
        return [e for e in self.effects if isinstance(e, Send)][index].headers


def session(retry: RetryPolicy = NO_JITTER) -> Session:
    return Session(Credentials("a@b.c", "pw"), "https://analytics.ytica.com", retry=retry)


def profile_flow(s: Session) -> Flow[str]:
    reply = yield from s.send(protocol.current_profile())
    return protocol.read_profile_login(reply)


LOGIN, TOKEN, ME = (
    ("POST", protocol.LOGIN_PATH),
    ("GET", protocol.TOKEN_PATH),
    ("GET", "/gdc/account/profile/current"),
)


# --- token renewal --------------------------------------------------------------------------------


def test_tokens_are_minted_lazily_and_only_the_sst_is_masked_before_any_request_carries_it() -> None:
    script = Script([logged_in(), temporary_token(), PROFILE])

    assert script.run(profile_flow(session())) == "a@b.c"

    assert script.sent == [LOGIN, TOKEN, ME]
    kinds = [type(e).__name__ for e in script.effects]
    # the SST (one per login) is masked before its use; a TT (one per 10 minutes) never reaches the
    # masker, which would keep it for good: it is a Token, which prints as ***
    assert kinds == ["Send", "Secret", "Send", "Send"]
    assert script.headers_of(2) == {protocol.SST_HEADER: "sst-1", protocol.TT_HEADER: "tt-1"}


def test_an_expired_tt_is_minted_again_from_the_sst_and_the_request_repeated_once() -> None:
    s = session()
    script = Script([logged_in(), temporary_token(), TT_EXPIRED, temporary_token("tt-2"), PROFILE])

    assert script.run(profile_flow(s)) == "a@b.c"

    assert script.sent == [LOGIN, TOKEN, ME, TOKEN, ME]  # no second login
    assert script.headers_of(4)[protocol.TT_HEADER] == "tt-2" and s.logins == 1


def test_a_gone_sst_means_a_new_login_revealed_by_the_token_request() -> None:
    s = session()
    script = Script(
        [
            logged_in(),
            temporary_token(),
            TT_EXPIRED,
            SST_EXPIRED,
            logged_in("sst-2"),
            temporary_token("tt-2"),
            PROFILE,
        ]
    )

    assert script.run(profile_flow(s)) == "a@b.c"

    assert script.sent == [LOGIN, TOKEN, ME, TOKEN, LOGIN, TOKEN, ME]
    assert s.logins == 2 and script.headers_of(6)[protocol.SST_HEADER] == "sst-2"


def test_a_second_401_after_renewing_is_an_error_not_a_loop() -> None:
    script = Script([logged_in(), temporary_token(), TT_EXPIRED, temporary_token("tt-2"), TT_EXPIRED])

    with pytest.raises(Exception, match=r"could not read the current user's profile \(HTTP 401"):
        script.run(profile_flow(session()))
    assert script.sent == [LOGIN, TOKEN, ME, TOKEN, ME]


def test_a_refused_login_is_never_retried_so_the_account_is_not_locked() -> None:
    script = Script([answer(401, {"error": {"message": "Bad Login or Password!"}})])

    with pytest.raises(FlexInsightsAuthError, match=r"Bad Login or Password!\) \(request id req-401\)"):
        script.run(profile_flow(session()))
    assert script.sent == [LOGIN] and script.slept == []


# --- retry budgets and Retry-After ----------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_exactly() -> None:
    script = Script([answer(429, Retry_After="7"), logged_in(), temporary_token(), PROFILE])

    script.run(profile_flow(session()))

    assert script.slept == [7.0] and script.sent == [LOGIN, LOGIN, TOKEN, ME]


def test_retry_after_beyond_the_wait_budget_is_cut_to_it_and_then_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.0, max_total_wait=10.0)
    script = Script([answer(503, Retry_After="60"), answer(503, Retry_After="60")])

    with pytest.raises(FlexInsightsTransientError, match=r"could not log in \(HTTP 503"):
        script.run(profile_flow(session(policy)))
    assert script.slept == [10.0]  # never the hour asked for; the second wait would break the budget
    assert script.sent == [LOGIN, LOGIN]


def test_the_attempt_budget_counts_every_try_of_one_request() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.0)
    script = Script([logged_in(), temporary_token(), answer(502), answer(502), answer(502)])

    with pytest.raises(FlexInsightsTransientError, match=r"HTTP 502\) \(request id req-502\)"):
        script.run(profile_flow(session(policy)))
    assert script.sent == [LOGIN, TOKEN, ME, ME, ME] and len(script.slept) == 2


def test_network_failures_are_retried_like_5xx_then_named_in_the_error() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.0)
    refused = TransportError("h:1 refused the connection", advice="check the port")
    script = Script([refused, refused])

    with pytest.raises(
        FlexInsightsTransientError,
        match=r"^Flex Insights could not log in: h:1 refused the connection \(2 tries\); check the port\.$",
    ):
        script.run(profile_flow(session(policy)))
    assert script.sent == [LOGIN, LOGIN] and len(script.slept) == 1


def test_a_recovered_failure_costs_no_extra_token() -> None:
    s = session()
    script = Script([logged_in(), temporary_token(), TransportError("ReadTimeout"), answer(500), PROFILE])

    assert script.run(profile_flow(s)) == "a@b.c"

    assert script.sent == [LOGIN, TOKEN, ME, ME, ME] and s.logins == 1
    assert script.headers_of(4)[protocol.TT_HEADER] == "tt-1"
