"""Authentication: login (SST), temporary tokens (TT), the profile, logout; and the token checks
every other endpoint makes."""

from __future__ import annotations

import secrets
import time

from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject
from airflow_provider_flexinsights.emulator.state import Login

SST_CHALLENGE = 'GoodData realm="GoodData API", cookie=GDCAuthSST location=/gdc/account/login'
TT_CHALLENGE = 'GoodData realm="GoodData API", cookie=GDCAuthTT'


def token_from(exchange: Exchange, header: str, cookie: str) -> str | None:
    """A token from its header, else from its cookie (GoodData accepts both)."""
    if value := exchange.header(header):
        return value
    for part in (exchange.header("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie:
            return value
    return None


def require_sst(exchange: Exchange) -> tuple[str, Login]:
    state = exchange.state
    sst = token_from(exchange, "X-GDC-AuthSST", "GDCAuthSST")
    with state.lock:
        login = state.logins.get(sst or "")
        if sst is None or login is None or login.expires < time.time():
            raise Reject(
                401,
                "Unauthorized: SST missing, expired or deleted",
                headers={"WWW-Authenticate": SST_CHALLENGE},
            )
        return sst, login


def require_tt(exchange: Exchange) -> Login:
    state = exchange.state
    tt = token_from(exchange, "X-GDC-AuthTT", "GDCAuthTT")
    with state.lock:
        sst, expires = state.tts.get(tt or "", ("", 0.0))
        login = state.logins.get(sst)
        uses = state.tt_uses[tt or ""] = state.tt_uses.get(tt or "", 0) + 1
        limit = state.config.tt_max_uses
        if login is None or expires < time.time() or (limit is not None and uses > limit):
            raise Reject(
                401, "Unauthorized: TT missing or expired", headers={"WWW-Authenticate": TT_CHALLENGE}
            )
        return login


def log_in(exchange: Exchange) -> None:
    body = exchange.json_body()
    request = body.get("postUserLogin") if isinstance(body, dict) else None
    expected = {"login", "password", "remember", "verify_level"}
    if not isinstance(request, dict) or set(request) != expected or request["verify_level"] != 2:
        raise Reject(400, "Expected postUserLogin with login, password, remember and verify_level 2")
    exchange.logged_body = {"postUserLogin": {**request, "password": "***"}}
    state = exchange.state
    if state.config.users.get(request["login"]) != request["password"]:
        raise Reject(
            401, "Bad Login or Password!", headers={"WWW-Authenticate": 'GoodData realm="GoodData API"'}
        )
    sst = secrets.token_urlsafe(24)
    profile_id = secrets.token_hex(16)
    with state.lock:
        state.logins[sst] = Login(request["login"], profile_id, time.time() + state.config.sst_ttl)
        state.issued_secrets.add(sst)
    profile = f"/gdc/account/profile/{profile_id}"
    exchange.send_json(
        200,
        {"userLogin": {"profile": profile, "state": f"/gdc/account/login/{profile_id}", "token": sst}},
    )


def mint_temporary_token(exchange: Exchange) -> None:
    sst, _ = require_sst(exchange)
    state = exchange.state
    tt = secrets.token_urlsafe(24)
    with state.lock:
        state.tts[tt] = (sst, time.time() + state.config.tt_ttl)
        state.issued_secrets.add(tt)
    exchange.send_json(200, {"userToken": {"token": tt}})


def current_profile(exchange: Exchange) -> None:
    login = require_tt(exchange)
    profile = f"/gdc/account/profile/{login.profile_id}"
    exchange.send_json(200, {"accountSetting": {"login": login.email, "links": {"self": profile}}})


def log_out(exchange: Exchange) -> None:
    sst, login = require_sst(exchange)
    if login.profile_id != exchange.param("profile"):
        raise Reject(403, "Cannot log out another user's session")
    state = exchange.state
    with state.lock:
        del state.logins[sst]
        for tt in [tt for tt, (owner, _) in state.tts.items() if owner == sst]:
            del state.tts[tt]
        state.logouts += 1
    exchange.send(204)
