"""Authentication: login (SST), temporary tokens (TT), the profile, logout; and the token checks
every other endpoint makes."""

from __future__ import annotations

import secrets
import time

from airflow_provider_flexinsights.emulator.exchange import Exchange, Reject, invalid_structure
from airflow_provider_flexinsights.emulator.state import Login

# The challenges as recorded (no comma between the parameters); docs/wire.md, "Authentication".
SST_CHALLENGE = 'GoodData realm="GoodData API" cookie=GDCAuthSST location=/gdc/account/login'
TT_CHALLENGE = 'GoodData realm="GoodData API" cookie=GDCAuthTT'
LOGIN_CHALLENGE = 'GoodData realm="GoodData API"'
TT_EXPIRED_BODY = {
    "error": {
        "code": 401,
        "message": "Authorization Required",
        "description": "This server could not verify that you are authorized to access the document "
        "requested. Either you supplied the wrong credentials (e.g., bad password), or your browser "
        "doesn't understand how to supply the credentials required",
        "links": {
            "documentation": "https://help.gooddata.com/display/developer/API+Reference#/reference/"
            "authentication/log-in"
        },
    }
}


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
            raise _sst_challenge()
        return sst, login


def _sst_challenge() -> Reject:
    """An SST missing, expired or deleted: the challenge, the cookie cleared, no body at all."""
    cleared = 'GDCAuthSST=""; Expires=Thu, 01-Jan-1970 00:00:10 GMT; Path=/gdc/account; Secure'
    headers = {"WWW-Authenticate": SST_CHALLENGE, "Set-Cookie": cleared}
    return Reject(401, "SST missing, expired or deleted", headers=headers, empty=True)


def _tt_challenge() -> Reject:
    """A TT missing or expired: the challenge with a JSON error body."""
    headers = {"WWW-Authenticate": TT_CHALLENGE}
    return Reject(401, "Authorization Required", headers=headers, document=TT_EXPIRED_BODY)


def require_tt(exchange: Exchange) -> Login:
    return _require_tt_of(exchange)[1]


def _require_tt_of(exchange: Exchange) -> tuple[str, Login]:
    """The SST a valid TT was minted from, and its login."""
    state = exchange.state
    tt = token_from(exchange, "X-GDC-AuthTT", "GDCAuthTT")
    with state.lock:
        sst, expires = state.tts.get(tt or "", ("", 0.0))
        login = state.logins.get(sst)
        uses = state.tt_uses[tt or ""] = state.tt_uses.get(tt or "", 0) + 1
        limit = state.config.tt_max_uses
        if login is None or expires < time.time() or (limit is not None and uses > limit):
            raise _tt_challenge()
        return sst, login


LOGIN_FIELDS = {"login", "password", "remember", "verify_level"}


def log_in(exchange: Exchange) -> None:
    body = exchange.json_body()
    request = body.get("postUserLogin") if isinstance(body, dict) and set(body) == {"postUserLogin"} else None
    if not isinstance(request, dict) or set(request) != LOGIN_FIELDS or request["verify_level"] != 2:
        raise invalid_structure("postUserLogin", "expected login, password, remember and verify_level 2")
    exchange.logged_body = {"postUserLogin": {**request, "password": "***"}}
    state = exchange.state
    if state.config.users.get(request["login"]) != request["password"]:
        bare = {"component": "Webapp", "message": "Bad Login or Password!", "parameters": []}
        raise Reject(
            401, "Bad Login or Password!", headers={"WWW-Authenticate": LOGIN_CHALLENGE}, document=bare
        )
    sst = secrets.token_urlsafe(24)
    profile_id = secrets.token_hex(16)
    with state.lock:
        state.logins[sst] = Login(request["login"], profile_id, time.time() + state.config.sst_ttl)
        state.issued_secrets.add(sst)
        state.issued_ssts.add(sst)
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
        state.tts_by_client[exchange.header("User-Agent") or ""] += 1
    exchange.send_json(200, {"userToken": {"token": tt}})


def current_profile(exchange: Exchange) -> None:
    """Recorded: 307 to the user's own profile URI, with an empty body and no Content-Type."""
    login = require_tt(exchange)
    location = f"/gdc/account/profile/{login.profile_id}"
    exchange.send(307, content_type=None, headers={"Location": location})


def profile(exchange: Exchange) -> None:
    login = require_tt(exchange)
    if login.profile_id != exchange.param("profile"):
        raise Reject(403, "You are not allowed to read profile %s", exchange.param("profile"))
    own = f"/gdc/account/profile/{login.profile_id}"
    links = {"self": own, "projects": f"{own}/projects"}
    exchange.send_json(200, {"accountSetting": {"login": login.email, "email": login.email, "links": links}})


def log_out(exchange: Exchange) -> None:
    """Recorded: the DELETE carries the SST and a TT; a stale TT gets the TT challenge, SST kept."""
    sst, login = require_sst(exchange)
    if _require_tt_of(exchange)[0] != sst:
        raise _tt_challenge()
    if login.profile_id != exchange.param("profile"):
        raise Reject(403, "Cannot log out another user's session")
    state = exchange.state
    with state.lock:
        del state.logins[sst]
        for tt in [tt for tt, (owner, _) in state.tts.items() if owner == sst]:
            del state.tts[tt]
        state.logouts += 1
    exchange.send(204)
