"""One test per fact recorded from the live GoodData API (docs/wire.md lists them with sources).

Each test writes the recorded exchange minimally (the cassette's path in a comment; cassettes are
under spec/integration/vcr_cassettes/ of github.com/gooddata/gooddata-ruby), then checks it against
both sides: the provider's reading of the recorded answer (protocol and session flows, scripted),
and the bundled emulator's answer to the same request over loopback. Either side drifting from
the recording fails a test.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from airflow_provider_flexinsights.emulator import (
    ALIAS_REPORT,
    CHANNEL_LABEL,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    QUEUE_LABEL,
    QUEUE_REPORT,
    REORDERED_REPORT,
    Emulator,
    EmulatorConfig,
    render_report,
)
from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsAsyncHook, FlexInsightsHook
from airflow_provider_flexinsights.library import protocol
from airflow_provider_flexinsights.library.columns import ColumnType, plan_columns
from airflow_provider_flexinsights.library.exceptions import FlexInsightsAuthError
from airflow_provider_flexinsights.library.filters import AttributeFilter, DateInterval
from airflow_provider_flexinsights.library.operations import FlexInsightsApi
from airflow_provider_flexinsights.library.protocol import Auth, Credentials, Reply, Request, Verdict
from airflow_provider_flexinsights.library.session import Flow, Send, Session

from tests.test_filters import export_with, filtered_download

TT_CHALLENGE = 'GoodData realm="GoodData API" cookie=GDCAuthTT'
SST_CHALLENGE = 'GoodData realm="GoodData API" cookie=GDCAuthSST location=/gdc/account/login'
PROFILE_ID = "5ad80b895edcc438e5a4418e222733fa"
RECORDED_TT_BODY = json.dumps(
    {"error": {"code": 401, "message": "Authorization Required", "description": "...", "links": {}}}
).encode()


RECORDED_HOST = "https://secure.gooddata.com"  # where the cassettes were recorded


def recorded(status: int, body: Any = b"", **headers: str) -> Reply:
    """A recorded answer: headers as the cassette spells them (``X_Gdc_Request`` -> ``X-Gdc-Request``)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    names = {name.replace("_", "-"): value for name, value in headers.items()}
    return Reply(status, names, raw, url=f"{RECORDED_HOST}/gdc/x")


def scripted(flow: Flow[Any], replies: list[Reply]) -> tuple[list[Send], Any]:
    """Run a session flow against recorded answers; the requests it sent and what it returned."""
    sends: list[Send] = []
    answers = iter(replies)
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, Send):
                sends.append(effect)
                effect = flow.send(next(answers))
            else:
                effect = flow.send(None)
    except StopIteration as done:
        return sends, done.value


LOGIN_REPLY = recorded(
    200, {"userLogin": {"profile": f"/gdc/account/profile/{PROFILE_ID}", "token": "sst-1"}}
)


def token_reply(tt: str) -> Reply:
    return recorded(200, {"userToken": {"token": tt}})


@dataclass
class Wire:
    """Raw HTTP to the emulator with a fresh login: sends what a test writes, nothing more."""

    emulator: Emulator
    http: requests.Session
    sst: str
    tt: str
    profile_id: str

    def send(self, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        tokens = {"X-GDC-AuthSST": self.sst, "X-GDC-AuthTT": self.tt}
        return self.http.request(
            method,
            f"{self.emulator.url}{path}",
            json=body,
            headers={**tokens, **headers},
            allow_redirects=False,
            timeout=10,
        )


@pytest.fixture
def wire(emulator: Emulator) -> Iterator[Wire]:
    http = requests.Session()
    login = {
        "postUserLogin": {"login": DEMO_EMAIL, "password": DEMO_PASSWORD, "remember": 0, "verify_level": 2}
    }
    user_login = http.post(f"{emulator.url}/gdc/account/login", json=login, timeout=10).json()["userLogin"]
    sst = user_login["token"]
    answer = http.get(f"{emulator.url}/gdc/account/token", headers={"X-GDC-AuthSST": sst}, timeout=10)
    profile_id = user_login["profile"].rsplit("/", 1)[-1]
    yield Wire(emulator, http, sst, answer.json()["userToken"]["token"], profile_id)
    http.close()


# --- authentication ---------------------------------------------------------------------------------


def test_profile_current_redirects_307_to_the_users_profile(wire: Wire) -> None:
    # GoodData/can_use_SSO.yml: GET /gdc/account/profile/current (SST+TT)
    #   -> 307, Location: /gdc/account/profile/5ad8..., empty body, no Content-Type
    #   GET /gdc/account/profile/5ad8... -> 200 {"accountSetting": {"login": ..., "links": {"self": ...}}}
    location = f"/gdc/account/profile/{PROFILE_ID}"
    account = {"accountSetting": {"login": "rubydev+admin@gooddata.com", "links": {"self": location}}}
    session = Session(Credentials("rubydev+admin@gooddata.com", "pw"), RECORDED_HOST)
    sends, reply = scripted(
        session.send(protocol.current_profile()),
        [LOGIN_REPLY, token_reply("tt-1"), recorded(307, Location=location), recorded(200, account)],
    )
    followed = sends[-1]
    assert (followed.request.method, followed.request.path) == ("GET", location)
    assert followed.headers[protocol.TT_HEADER] == "tt-1"  # the token travels again, to the same host
    assert protocol.read_profile_login(reply) == "rubydev+admin@gooddata.com"

    current = wire.send("GET", "/gdc/account/profile/current")
    assert current.status_code == 307 and current.content == b""
    assert "Content-Type" not in current.headers
    assert current.headers["Location"] == f"/gdc/account/profile/{wire.profile_id}"
    own = wire.send("GET", current.headers["Location"])
    assert own.status_code == 200 and own.json()["accountSetting"]["login"] == DEMO_EMAIL


def test_logout_with_a_stale_tt_gets_the_tt_challenge_and_the_sst_stays_alive(wire: Wire) -> None:
    # GoodData_Process/all.yml: DELETE /gdc/account/login/{id} (SST + stale TT)
    #   -> 401, WWW-Authenticate: GoodData realm="GoodData API" cookie=GDCAuthTT, JSON error body;
    #   GET /gdc/account/token -> 200 {"userToken"}; DELETE again -> 204
    session = Session(Credentials("a@b.c", "pw"), RECORDED_HOST)
    scripted(session.send(protocol.current_profile()), [LOGIN_REPLY, token_reply("stale"), recorded(200)])
    challenge = recorded(
        401, RECORDED_TT_BODY, WWW_Authenticate=TT_CHALLENGE, Content_Type="application/json"
    )
    sends, _ = scripted(session.log_out(), [challenge, token_reply("fresh"), recorded(204)])
    assert [(s.request.method, s.request.path) for s in sends] == [
        ("DELETE", f"/gdc/account/login/{PROFILE_ID}"),
        ("GET", "/gdc/account/token"),
        ("DELETE", f"/gdc/account/login/{PROFILE_ID}"),
    ]
    assert (sends[0].headers[protocol.TT_HEADER], sends[2].headers[protocol.TT_HEADER]) == ("stale", "fresh")
    assert all(s.headers[protocol.SST_HEADER] == "sst-1" for s in sends)

    wire.emulator.expire_temporary_tokens()
    stale = wire.send("DELETE", f"/gdc/account/login/{wire.profile_id}")
    assert stale.status_code == 401 and stale.headers["WWW-Authenticate"] == TT_CHALLENGE
    assert stale.json()["error"]["code"] == 401 and wire.emulator.live_sessions == 1
    wire.tt = wire.send("GET", "/gdc/account/token").json()["userToken"]["token"]
    assert wire.send("DELETE", f"/gdc/account/login/{wire.profile_id}").status_code == 204
    assert wire.emulator.live_sessions == 0


def test_an_expired_sst_gets_the_sst_challenge_with_no_body_and_no_content_type(wire: Wire) -> None:
    # GoodData_-_logging/_logger/has_the_request_id_logged_when_I_passed_it.yml: GET /gdc/account/token
    #   -> 401, WWW-Authenticate: GoodData realm="GoodData API" cookie=GDCAuthSST location=/gdc/account/login,
    #   Set-Cookie: GDCAuthSST=""; ..., body '' (no Content-Type)
    answer = recorded(401, WWW_Authenticate=SST_CHALLENGE, X_Gdc_Request="a7eP:BMRO:3IRb")
    mint = protocol.mint_temporary_token()
    assert protocol.judge(mint, answer) is Verdict.SST_EXPIRED
    assert "(request id a7eP:BMRO:3IRb)" in str(protocol.error_for(mint, answer))  # no body to read

    wire.emulator.expire_sessions()
    token = wire.send("GET", "/gdc/account/token")
    assert (token.status_code, token.content) == (401, b"")
    assert "Content-Type" not in token.headers and token.headers["WWW-Authenticate"] == SST_CHALLENGE
    assert token.headers["Set-Cookie"].startswith('GDCAuthSST="";')


def test_an_expired_tt_gets_the_tt_challenge_with_a_json_body(wire: Wire) -> None:
    # GoodData_Process/all.yml (the first DELETE): 401, WWW-Authenticate: ... cookie=GDCAuthTT,
    #   Content-Type: application/json, {"error": {"code": 401, "message": "Authorization Required", ...}}
    lookup = protocol.resolve_identifiers(DEMO_WORKSPACE, [protocol.DATE_IDENTIFIER])
    answer = recorded(401, RECORDED_TT_BODY, WWW_Authenticate=TT_CHALLENGE)
    assert protocol.judge(lookup, answer) is Verdict.TT_EXPIRED
    assert protocol.server_message(answer.body) == "Authorization Required"

    wire.emulator.expire_temporary_tokens()
    stale = wire.send("POST", f"/gdc/md/{DEMO_WORKSPACE}/identifiers", {"identifierToUri": ["x"]})
    assert stale.status_code == 401 and stale.headers["WWW-Authenticate"] == TT_CHALLENGE
    assert stale.headers["Content-Type"].startswith("application/json")
    assert stale.json()["error"]["message"] == "Authorization Required"


def test_a_bad_password_gets_401_with_the_bare_error_shape(emulator: Emulator) -> None:
    # GoodData_Project/roles.yml: POST /gdc/account/login -> 401,
    #   WWW-Authenticate: GoodData realm="GoodData API",
    #   {"component":"Webapp","message":"Bad Login or Password!","parameters":[]}
    request = protocol.login("rubydev+admin@gooddata.com", "wrong")
    bare = {"component": "Webapp", "message": "Bad Login or Password!", "parameters": []}
    answer = recorded(401, bare, WWW_Authenticate='GoodData realm="GoodData API"')
    assert protocol.judge(request, answer) is Verdict.FAIL  # never retried
    error = protocol.error_for(request, answer)
    assert isinstance(error, FlexInsightsAuthError) and "Bad Login or Password!" in str(error)

    body = {"postUserLogin": {"login": DEMO_EMAIL, "password": "wrong", "remember": 1, "verify_level": 2}}
    refused = requests.post(f"{emulator.url}/gdc/account/login", json=body, timeout=10)
    assert (
        refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'GoodData realm="GoodData API"'
    )
    assert refused.json() == bare


# --- request bodies: the service validates them against its schema -----------------------------------


def test_a_body_outside_the_schema_gets_400_structure_invalid(wire: Wire) -> None:
    # GoodData_Mixin_MdIdToUri/should_throw_BadRequest_for_-1.yml: POST /gdc/md/{ws}/identifiers
    #   {"identifierToUri":["-1"]} -> 400
    #   {"error":{"parameters":["identifierToUri","STRUCTURE INVALID - ..."],"component":"Apache::REST",
    #   "errorClass":"GDC::Exception::User","message":"Checking '%s', result %s"}}
    lookup = protocol.resolve_identifiers("ws", ["-1"])
    error = {
        "parameters": ["identifierToUri", "STRUCTURE INVALID - name of structure:'IdentifierToUri'"],
        "component": "Apache::REST",
        "errorClass": "GDC::Exception::User",
        "message": "Checking '%s', result %s",
    }
    failure = protocol.error_for(lookup, recorded(400, {"error": error}))
    assert "(HTTP 400: Checking 'identifierToUri', result STRUCTURE INVALID" in str(failure)
    assert protocol.judge(lookup, recorded(400, {"error": error})) is Verdict.FAIL  # not retried

    answer = wire.send("POST", f"/gdc/md/{DEMO_WORKSPACE}/identifiers", {"identifierToUri": ["-1"]})
    document = answer.json()["error"]
    assert answer.status_code == 400 and document["message"] == "Checking '%s', result %s"
    assert document["parameters"][0] == "identifierToUri"
    assert document["parameters"][1].startswith("STRUCTURE INVALID")
    assert (document["component"], document["errorClass"]) == ("Apache::REST", "GDC::Exception::User")


@pytest.mark.parametrize(
    ("request_", "recorded_body"),
    [
        # GoodData_Project/roles.yml
        (
            protocol.login("e", "p"),
            {"postUserLogin": {"login": "e", "password": "p", "remember": 1, "verify_level": 2}},
        ),
        # GoodData_Mixin_MdIdToUri/should_throw_BadRequest_for_-1.yml
        (protocol.resolve_identifiers("ws", ["x"]), {"identifierToUri": ["x"]}),
        # GoodData_Report/raw_export/exports_raw_report.yml (context.filters: Twilio's export guide)
        (protocol.start_raw_export("ws", "248", []), {"report_req": {"report": "/gdc/md/ws/obj/248"}}),
        # User_filters_implementation/should_create_a_mandatory_user_filter.yml
        (protocol.valid_elements("ws", "/gdc/md/ws/obj/214", "label"), {"validElementsRequest": {}}),
    ],
    ids=["login", "identifiers", "execute-raw", "valid-elements"],
)
def test_the_provider_sends_only_recorded_body_fields(
    wire: Wire, request_: Request, recorded_body: dict[str, Any]
) -> None:
    def shape(document: Any) -> Any:
        return {k: shape(v) for k, v in document.items()} if isinstance(document, dict) else None

    sent = dict(request_.json or {})
    if "report_req" in sent:  # the only field beyond the recording: the documented filter context
        sent = {"report_req": {k: v for k, v in sent["report_req"].items() if k != "context"}}
    assert shape(sent) == shape(recorded_body)

    unknown = {"validElementsRequest": {"titlez": ["Sales"]}}
    answer = wire.send(
        "POST", f"{wire.emulator.label(QUEUE_LABEL).uri(DEMO_WORKSPACE)}/validElements", unknown
    )
    assert answer.status_code == 400 and answer.json()["error"]["parameters"][1].startswith(
        "STRUCTURE INVALID"
    )


# --- raw export ---------------------------------------------------------------------------------------

RAW_EXPORT_URI = (
    "/gdc/projects/pupai5yb8x9atfs0cm5igtqnkojsqvfn/execute/raw/49ff06f228ef7a6d5684371701443f11020c40ceb417bc1c"
    "0000000f?q=eAGrVirJLMlJVbJSCkotyC8qUSjJV0itALGUdJRyU0uKMpOLlayiq5XyEnNBqopLcxXy0xR8MvNS%0AixWcMxLz0lNTgCozU5"
    "SsDA1qY3WUEkuAepJKS1JB2mJrATYRIII%3D%0A&c=bd1138d24b9c6d644102f33f267cb4ad"
)


def test_execute_raw_answers_201_with_the_export_uri_in_location_and_body(wire: Wire) -> None:
    # GoodData_Report/raw_export/exports_raw_report.yml: POST /gdc/app/projects/{ws}/execute/raw
    #   -> 201, Location: /gdc/projects/{ws}/execute/raw/{id}?q=...%0A&c=..., body {"uri": <the same>}
    answer = recorded(201, {"uri": RAW_EXPORT_URI}, Location=RAW_EXPORT_URI)
    start = protocol.start_raw_export("ws", "1", [])
    assert protocol.read_export_uri(start, answer, RECORDED_HOST) == RAW_EXPORT_URI  # byte for byte

    body = {"report_req": {"report": f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"}}
    started = wire.send("POST", f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw", body)
    assert started.status_code == 201 and started.headers["Location"] == started.json()["uri"]
    assert re.fullmatch(
        rf"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/\w+\?q=\w+&c=\w+", started.json()["uri"]
    )


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=1)])
def test_an_export_answers_202_with_its_uri_then_200_csv_as_an_attachment(wire: Wire) -> None:
    # Full_project_implementation/should_be_able_to_export_report.yml:
    #   GET {result uri} -> 202 {"uri": <same>};
    # GoodData_Report/raw_export/exports_raw_report.yml: GET {export uri} -> 200, Content-Type: text/csv,
    #   Content-Disposition: attachment; filename="..."; body "\"sum of Lines Changed\"\r\n\"11.00\"\r\n"
    poll = protocol.check_export(RAW_EXPORT_URI, "read")
    pending = recorded(202, {"uri": RAW_EXPORT_URI})
    assert protocol.read_export_state(poll, pending) is protocol.ExportState.PENDING
    ready = recorded(200, b'"a"\r\n', Content_Type="text/csv")
    assert protocol.read_export_state(poll, ready) is protocol.ExportState.READY

    body = {"report_req": {"report": f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"}}
    uri = wire.send("POST", f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw", body).json()["uri"]
    pending, ready = wire.send("GET", uri), wire.send("GET", uri)
    assert pending.status_code == 202 and pending.json() == {"uri": uri}
    assert ready.status_code == 200 and ready.headers["Content-Type"].startswith("text/csv")
    assert ready.headers["Content-Disposition"].startswith("attachment; filename=")
    assert ready.content.startswith(b'"Queue","Date"') and b'"\r\n"' in ready.content


# --- validElements --------------------------------------------------------------------------------------

LABEL_PATH = "/gdc/md/hmaayky1211ud23jk87m7r1p70tjp45u/obj/214"
RECORDED_REDIRECT = (
    f"{LABEL_PATH}/validElements?q=eAE1T0tuxSAMvIvXWRgCgb6rVBXi26KSEIGjLqrevdD0eWFpRuPxzDekXCg2eBxXKctAx3tsZ8sH%0A"
    "&c=0389e0ee924c6988e0df20712012e297"
)


def lookup_path(emulator: Emulator, query: str = "?offset=0&limit=1000") -> str:
    return f"{emulator.label(QUEUE_LABEL).uri(DEMO_WORKSPACE)}/validElements{query}"


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_detour=(303,))])
def test_valid_elements_answers_303_to_a_query_uri_on_the_same_path(wire: Wire) -> None:
    # User_filters_implementation/should_create_a_mandatory_user_filter.yml:
    #   POST {label}/validElements?limit=1&offset=0&order=asc {"validElementsRequest":{}}
    #   -> 303, Location: {label}/validElements?q=...%0A&c=..., body {"uri": <the same>}; GET Location -> 200
    lookup = protocol.valid_elements("hmaayky1211ud23jk87m7r1p70tjp45u", LABEL_PATH, "Email")
    followed = protocol.redirect_target(
        lookup, recorded(303, {"uri": RECORDED_REDIRECT}, Location=RECORDED_REDIRECT), RECORDED_HOST
    )
    assert followed is not None and (followed.method, followed.path) == ("GET", RECORDED_REDIRECT)

    see_other = wire.send("POST", lookup_path(wire.emulator), {"validElementsRequest": {}})
    location = see_other.headers["Location"]
    assert see_other.status_code == 303 and see_other.json() == {"uri": location}
    assert location.startswith(lookup_path(wire.emulator, "?q="))
    assert wire.send("GET", location).status_code == 200


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_detour=(303, 202))])
def test_valid_elements_may_answer_202_on_the_redirected_uri_which_is_polled_there(wire: Wire) -> None:
    # gooddata-js src/xhr.ts: "validElements returns 303 first with new url which may then return 202 to
    #   poll on" (it polls response.url, the redirected one, with GET); gooddata-ruby
    #   lib/gooddata/models/metadata/label.rb polls while taskState.status is RUNNING
    redirected = Request("GET", RECORDED_REDIRECT, "look up", Auth.TT)
    running = recorded(202, {"taskState": {"status": "RUNNING"}})
    polled = protocol.poll_target(redirected, running, RECORDED_HOST)
    assert polled is not None and (polled.method, polled.path) == ("GET", RECORDED_REDIRECT)
    post = protocol.valid_elements("hmaayky1211ud23jk87m7r1p70tjp45u", LABEL_PATH, "Email")
    repolled = protocol.poll_target(post, recorded(202), RECORDED_HOST)
    assert repolled is not None and (repolled.method, repolled.path) == ("GET", post.path)  # no re-POST

    location = wire.send("POST", lookup_path(wire.emulator), {"validElementsRequest": {}}).headers["Location"]
    pending = wire.send("GET", location)
    assert pending.status_code == 202 and "Location" not in pending.headers
    assert wire.send("GET", location).status_code == 200


def test_valid_elements_pages_write_offset_and_total_as_strings_without_next(wire: Wire) -> None:
    # User_filters_implementation/should_create_a_mandatory_user_filter.yml (limit=1):
    #   {"validElements":{"elementsMeta":{...},"paging":{"count":1,"total":"3","offset":"0"},"items":[...]}}
    page = {
        "validElements": {
            "paging": {"count": 1, "total": "3", "offset": "0"},
            "items": [{"element": {"title": "jirka@gooddata.com", "uri": f"{LABEL_PATH}/elements?id=3"}}],
        }
    }
    assert protocol.read_valid_elements(recorded(200, page), 0).next_offset == 1
    last = {
        "validElements": {
            "paging": {"count": 1, "total": "3", "offset": "2"},
            "items": page["validElements"]["items"],
        }
    }
    assert protocol.read_valid_elements(recorded(200, last), 2).next_offset is None

    answer = wire.send("POST", lookup_path(wire.emulator, "?offset=1&limit=2"), {"validElementsRequest": {}})
    paging = answer.json()["validElements"]["paging"]
    assert paging == {"count": 2, "total": "5", "offset": "1"}
    assert set(answer.json()["validElements"]) == {"elementsMeta", "paging", "items"}


def test_valid_elements_filter_parameter_is_a_substring_match(wire: Wire) -> None:
    # GoodData_Label/_get_valid_elements/returns_an_exact_match.yml:
    #   POST {label}/validElements?filter=AA1004&limit=100000&offset=0&order=asc {"validElementsRequest":{}}
    #   -> items AA1004 and AA10041 (the Ruby client keeps the exact match itself)
    request = protocol.valid_elements("ws", "/gdc/md/ws/obj/275", "label", text="AA 1004/x")
    assert "&filter=AA%201004%2Fx" in request.path and request.json == {"validElementsRequest": {}}

    answer = wire.send(
        "POST", lookup_path(wire.emulator, "?offset=0&limit=100&filter=E"), {"validElementsRequest": {}}
    )
    titles = [item["element"]["title"] for item in answer.json()["validElements"]["items"]]
    assert titles == ["Sales", "Retention", "Everyone"]  # they contain "e", in any case
    assert answer.json()["validElements"]["elementsMeta"]["filter"] == "E"


def test_a_valid_elements_body_field_no_recording_shows_gets_the_schemas_400(wire: Wire) -> None:
    # "titles" is sent by one public Flex solution but by no GoodData client or spec (docs/wire.md):
    # the provider never sends it, and the emulator answers it as the schema answers any unknown
    # field (should_throw_BadRequest_for_-1.yml)
    request = protocol.valid_elements("ws", "/gdc/md/ws/obj/1", "label", text="Sales")
    assert request.json == {"validElementsRequest": {}}

    answer = wire.send("POST", lookup_path(wire.emulator), {"validElementsRequest": {"titles": ["Sales"]}})
    assert answer.status_code == 400 and "STRUCTURE INVALID" in answer.json()["error"]["parameters"][1]


# --- every answer --------------------------------------------------------------------------------------


def test_every_answer_carries_a_request_id(wire: Wire) -> None:
    # every response of every cassette carries X-Gdc-Request (e.g. GoodData/can_use_SSO.yml:
    #   "X-Gdc-Request: :Yc2vCCB6JcBZRJJF5jrRkA:aHYtjrAZuYwSIKuFMNR7zQ:Zv3Lfs2dqM2oTTwX", spelled so)
    answer = recorded(404, {"error": {"message": "Not found"}}, X_Gdc_Request=":Yc2v:aHYt:Zv3L")
    assert answer.request_id == ":Yc2v:aHYt:Zv3L"
    assert "(request id :Yc2v:aHYt:Zv3L)" in str(protocol.error_for(protocol.list_reports("ws"), answer))

    answers = [
        wire.send("GET", "/gdc/account/profile/current"),
        wire.send("GET", "/gdc/account/token"),
        wire.send("POST", f"/gdc/md/{DEMO_WORKSPACE}/identifiers", {"identifierToUri": ["-1"]}),
        wire.send("GET", f"/gdc/md/{DEMO_WORKSPACE}/query/reports"),
        wire.send("GET", "/gdc/nowhere"),
        wire.send("DELETE", f"/gdc/account/login/{wire.profile_id}"),
        wire.send("GET", "/gdc/account/token"),  # the SST is gone: the empty-bodied challenge
    ]
    assert [a.status_code for a in answers] == [307, 200, 400, 200, 404, 204, 401]
    assert all(a.headers.get("X-GDC-Request") for a in answers)


# --- the provider against the strict emulator: whole flows, both transports ----------------------------


def test_test_connection_follows_the_307_to_the_profile_and_logs_out(
    flex_connection: str, emulator: Emulator
) -> None:
    ok, message = FlexInsightsHook().test_connection()

    assert ok, message
    assert [(r.endpoint, r.method, r.path, r.status) for r in emulator.requests][2:4] == [
        ("profile", "GET", "/gdc/account/profile/current", 307),
        ("profile", "GET", emulator.requests[2].path.replace("current", "") + _profile_id(emulator), 200),
    ]
    assert emulator.calls()[-1] == ("logout", 204) and emulator.live_sessions == 0


def _profile_id(emulator: Emulator) -> str:
    logout = next(r for r in emulator.requests if r.endpoint == "logout")
    return logout.path.rsplit("/", 1)[-1]


def test_a_logout_meeting_a_stale_tt_renews_it_and_leaves_no_sst_alive(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        client.verify_access()
        emulator.expire_temporary_tokens()  # a long wait: the TT went stale before the logout

    assert emulator.calls()[-3:] == [("logout", 401), ("token", 200), ("logout", 204)]
    assert emulator.live_sessions == 0


def test_the_triggerers_logout_meeting_a_stale_tt_leaves_no_sst_alive(
    flex_connection: str, emulator: Emulator
) -> None:
    with FlexInsightsHook().session() as client:
        uri = client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")

    async def poll_then_wait_past_the_tt() -> None:
        async with FlexInsightsAsyncHook().session() as shared:
            await shared.check_export(uri)
            emulator.expire_temporary_tokens()

    asyncio.run(poll_then_wait_past_the_tt())

    assert emulator.calls()[-3:] == [("logout", 401), ("token", 200), ("logout", 204)]
    assert emulator.live_sessions == 0


def lookup_requests(emulator: Emulator) -> list[tuple[str, str, int]]:
    return [
        (r.method, r.path.split("validElements")[1], r.status)
        for r in emulator.requests
        if r.endpoint == "elements"
    ]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_detour=(303, 202))])
def test_a_lookup_answered_303_then_202_is_followed_on_the_redirected_uri(
    flex_connection: str, emulator: Emulator
) -> None:
    body = filtered_download(FlexInsightsHook(), DateInterval("2024-03-01", "2024-03-01"), sales())

    (post, *gets) = lookup_requests(emulator)
    redirected = gets[0][1]
    assert post == ("POST", "?offset=0&limit=1000&filter=Sales", 303)
    assert redirected.startswith("?q=") and gets == [("GET", redirected, 202), ("GET", redirected, 200)]
    assert body == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where={"Queue": {"Sales"}}
    )


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(valid_elements_max_page=2)])
def test_string_paging_reads_every_page_of_a_label(flex_connection: str, emulator: Emulator) -> None:
    not_billing = AttributeFilter(QUEUE_LABEL, ("Billing",), exclude=True)

    body = filtered_download(FlexInsightsHook(), DateInterval("2024-03-01", "2024-03-01"), not_billing)

    offsets = [path for method, path, _ in lookup_requests(emulator)]
    assert offsets == ["?offset=0&limit=1000", "?offset=2&limit=1000", "?offset=4&limit=1000"]
    kept = {"Sales", "Support", "Retention", "Everyone"}
    assert body == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where={"Queue": kept}
    )


def test_value_filters_look_values_up_with_the_recorded_filter_search_only(
    flex_connection: str, emulator: Emulator
) -> None:
    day = DateInterval("2024-03-01", "2024-03-01")
    with FlexInsightsHook().session() as client:
        sales_body = export_with(client, day, sales())
        first = lookup_requests(emulator)
        emulator.clear_requests()
        both_body = export_with(client, day, AttributeFilter(CHANNEL_LABEL, ("sms", "chat")))
        second = lookup_requests(emulator)

    expected = render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where={"Queue": {"Sales"}}
    )
    assert sales_body == expected
    both = {"Channel": {"sms", "chat"}}
    assert both_body == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01", where=both)
    # one filter search per value, an empty body each time: never a refused probe first
    assert first == [("POST", "?offset=0&limit=1000&filter=Sales", 200)]
    assert second == [
        ("POST", "?offset=0&limit=1000&filter=sms", 200),
        ("POST", "?offset=0&limit=1000&filter=chat", 200),
    ]
    assert all(r.body == {"validElementsRequest": {}} for r in emulator.requests if r.endpoint == "elements")


def sales() -> AttributeFilter:
    return AttributeFilter(QUEUE_LABEL, ("Sales",))


# --- Report metadata: what a typed load reads (docs/wire.md, "Report metadata") ------------------------

RECORDED_BASE = "https://secure.gooddata.com"  # where ``recorded`` answers come from
MM = "/gdc/md/d1jibu5q4oaxutzx2gvh940i9c95domw"  # migrates_metrics.yml's workspace
FAST = "/gdc/md/z731txz55xvey6djylkrjsgyq178qhbe"  # is_possible_to_move_attribute_..._fast_attribute_.yml's
REGEXP = "/gdc/md/uihlr91spuzouu4qph5twhixwg9gqice"  # ..._lookup_the_attributes_by_regexp_....yml's


def meta(uri: str, title: str, category: str, identifier: str = "") -> dict[str, Any]:
    return {"uri": uri, "title": title, "category": category, "identifier": identifier, "tags": ""}


def in_grid(label_uri: str) -> dict[str, Any]:
    """An attribute label in a grid's rows or columns, as recorded (no alias)."""
    return {"attribute": {"alias": "", "totals": [[]], "uri": label_uri}}


def emulated(wire: Wire, object_id: str | int) -> dict[str, Any]:
    answer = wire.send("GET", f"/gdc/md/{DEMO_WORKSPACE}/obj/{object_id}")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def test_a_report_lists_its_definitions_oldest_first_and_the_last_is_current(wire: Wire) -> None:
    # E2E_the_whole_life-cycle/5_-_Subsequent_Release/.../migrates_metrics.yml: GET {ws}/obj/384 -> 200
    #   {"report": {"content": {"domains": [], "definitions": ["{ws}/obj/383"]},
    #   "meta": {..., "category": "report"}}}
    # Full_project_implementation/should_be_able_to_purge_report_from_older_revisions.yml: after a PUT
    #   of a new version, "definitions": ["{ws}/obj/269", "{ws}/obj/271"] (the new one last)
    request = protocol.read_object("uihlr91spuzouu4qph5twhixwg9gqice", "270")
    report = {"domains": [], "definitions": [f"{REGEXP}/obj/269", f"{REGEXP}/obj/271"]}
    answer = recorded(200, {"report": {"content": report, "meta": meta(f"{REGEXP}/obj/270", "r", "report")}})
    assert protocol.read_report_definition_uri(request, answer, RECORDED_BASE) == f"{REGEXP}/obj/271"

    served = emulated(wire, REORDERED_REPORT)["report"]
    assert served["meta"]["category"] == "report" and served["content"]["domains"] == []
    assert served["content"]["definitions"] == [
        f"/gdc/md/{DEMO_WORKSPACE}/obj/{REORDERED_REPORT}{n}" for n in (1, 2)
    ]
    older, current = (emulated(wire, f"{REORDERED_REPORT}{n}")["reportDefinition"] for n in (1, 2))
    assert older["content"]["grid"] != current["content"]["grid"]


def test_a_grid_names_labels_and_metrics_by_uri_with_aliases_and_a_metric_group_marker(wire: Wire) -> None:
    # migrates_metrics.yml: GET {ws}/obj/383 -> {"reportDefinition": {"content": {"grid": {"sort": ...,
    #   "columnWidths": [], "columns": [{"attribute": {"alias": "", "totals": [[]], "uri": "{ws}/obj/293"}}],
    #   "metrics": [{"alias": "Customers Count", "uri": "{ws}/obj/369"}], "rows": ["metricGroup"]},
    #   "format": "grid", "filters": []}, ...}}
    # ..._fast_attribute_.yml: GET {ws}/obj/267 -> the same with the label in "rows" and
    #   "columns": ["metricGroup"], metric alias "sum of Lines Changed"
    for rows, columns, label, alias in (
        (["metricGroup"], [in_grid(f"{MM}/obj/293")], f"{MM}/obj/293", "Customers Count"),
        ([in_grid(f"{FAST}/obj/219")], ["metricGroup"], f"{FAST}/obj/219", "sum of Lines Changed"),
    ):  # fmt: skip
        grid = {"sort": {"columns": [], "rows": []}, "columnWidths": [], "columns": columns, "rows": rows,
                "metrics": [{"alias": alias, "uri": f"{MM}/obj/369"}]}  # fmt: skip
        content = {"grid": grid, "format": "grid", "filters": []}
        answer = recorded(
            200, {"reportDefinition": {"content": content, "meta": meta("/x", "u", "reportDefinition")}}
        )
        assert protocol.read_report_grid(answer) == (
            protocol.GridItem("attribute", label),
            protocol.GridItem("metric", f"{MM}/obj/369", alias),
        )

    for report_id, marker in ((REORDERED_REPORT, "rows"), (QUEUE_REPORT, "columns")):
        definition = emulated(wire, f"{report_id}{2 if report_id == REORDERED_REPORT else 1}")[
            "reportDefinition"
        ]
        served = definition["content"]
        assert (served["format"], served["filters"], definition["meta"]["category"]) == (
            "grid",
            [],
            "reportDefinition",
        )
        assert set(served["grid"]) == {"sort", "columnWidths", "columns", "metrics", "rows"}
        assert served["grid"][marker][-1] == "metricGroup"
        other = served["grid"]["columns" if marker == "rows" else "rows"]
        assert other and all(set(item["attribute"]) == {"alias", "totals", "uri"} for item in other)
        assert all(set(m) == {"alias", "uri"} for m in served["grid"]["metrics"])


ATTRIBUTE_163 = {
    # Full_project_implementation/
    #   should_be_able_to_lookup_the_attributes_by_regexp_and_return_a_collection.yml:
    #   GET {ws}/obj/163 -> the date attribute; each label (displayForm) says its format in content.type
    #   (GoodData_MandatoryUserFilter/all.yml records the same labels)
    "attribute": {
        "content": {
            "type": "GDC.time.date",
            "displayForms": [
                {
                    "content": {"formOf": f"{REGEXP}/obj/163", "default": n, "type": day_type},
                    "meta": meta(f"{REGEXP}/obj/{object_id}", title, "attributeDisplayForm", identifier),
                }
                for n, (object_id, day_type, identifier, title) in enumerate(
                    [
                        (202, "GDC.time.day_us", "committed_on.date.mmddyyyy", "mm/dd/yyyy (Committed On)"),
                        (201, "GDC.time.day", "committed_on.date.yyyymmdd", "yyyy-mm-dd (Committed On)"),
                        (200, "GDC.time.day_eu", "committed_on.date.ddmmyyyy", "dd/mm/yyyy (Committed On)"),
                        (203, "GDC.time.day_iso", "committed_on.date.eddmmyyyy", "dd-mm-yyyy (Committed On)"),
                    ],
                    start=1,
                )
            ],
        },
        "meta": meta(f"{REGEXP}/obj/163", "Date (Committed On)", "attribute", "committed_on.date"),
    }
}
LABEL_219 = {
    # ..._fast_attribute_.yml: GET {ws}/obj/219 -> a label without a type (not a date), of attribute 217
    "attributeDisplayForm": {
        "content": {"formOf": f"{FAST}/obj/217", "expression": f"[{FAST}/obj/16]", "default": 1},
        "links": {"elements": f"{FAST}/obj/219/elements"},
        "meta": meta(f"{FAST}/obj/219", "Email", "attributeDisplayForm", "label.devs.dev_id.email"),
    }
}


def test_a_label_names_its_attribute_and_the_date_attributes_labels_say_their_format(wire: Wire) -> None:
    label = protocol.read_grid_object(recorded(200, LABEL_219))
    assert (label.category, label.title, label.form_of, label.label_type) == (
        "attributeDisplayForm", "Email", f"{FAST}/obj/217", ""
    )  # fmt: skip
    date = protocol.read_grid_object(recorded(200, ATTRIBUTE_163))
    assert (date.category, date.title) == ("attribute", "Date (Committed On)")
    assert dict(date.label_types) == {
        f"{REGEXP}/obj/202": "GDC.time.day_us",
        f"{REGEXP}/obj/201": "GDC.time.day",
        f"{REGEXP}/obj/200": "GDC.time.day_eu",
        f"{REGEXP}/obj/203": "GDC.time.day_iso",
    }

    queue_label = emulated(wire, 20011)["attributeDisplayForm"]
    assert set(queue_label["content"]) == {"formOf", "expression", "default"}  # no type: not a date
    assert queue_label["meta"]["category"] == "attributeDisplayForm"
    attribute = emulated(wire, queue_label["content"]["formOf"].rsplit("/", 1)[-1])["attribute"]
    assert (attribute["meta"]["category"], attribute["meta"]["title"]) == ("attribute", "Queue")
    served_date = emulated(wire, 20050)["attribute"]
    assert served_date["content"]["type"] == "GDC.time.date"
    forms = {f["meta"]["identifier"]: f["content"]["type"] for f in served_date["content"]["displayForms"]}
    assert forms == {
        "date.date.mmddyyyy": "GDC.time.day_us",
        "date.date.yyyymmdd": "GDC.time.day",
        "date.date.ddmmyyyy": "GDC.time.day_eu",
        "date.date.eddmmyyyy": "GDC.time.day_iso",
    }
    eu_label = emulated(wire, 20053)["attributeDisplayForm"]
    assert eu_label["content"]["type"] == "GDC.time.day_eu"  # a label read alone says its type too
    assert eu_label["content"]["formOf"] == f"/gdc/md/{DEMO_WORKSPACE}/obj/20050"


def test_a_metric_has_a_title_and_a_format_and_the_raw_export_writes_it_unformatted(wire: Wire) -> None:
    # migrates_metrics.yml: GET {ws}/obj/369 -> {"metric": {"content": {"format": "#,##0", "tree": ...,
    #   "expression": "SELECT COUNT(...)"}, "meta": {"title": "Customers Count", "category": "metric", ...}}}
    #   (GoodData_Metric/should_accept_number_format_in_constructor.yml: "format": "#,##0%");
    # GoodData_Report/raw_export/exports_raw_report.yml: that metric's value in the CSV is "11.00"
    content = {"format": "#,##0", "expression": f"SELECT COUNT([{MM}/obj/281])"}
    answer = recorded(
        200, {"metric": {"content": content, "meta": meta(f"{MM}/obj/369", "Customers Count", "metric")}}
    )
    metric = protocol.read_grid_object(answer)
    assert (metric.category, metric.title, metric.form_of, metric.label_type) == (
        "metric",
        "Customers Count",
        "",
        "",
    )

    served = emulated(wire, 21004)["metric"]
    assert (served["meta"]["title"], served["meta"]["category"]) == ("Service Level", "metric")
    assert served["content"]["format"] == "#,##0.00%" and served["content"]["expression"].startswith(
        "SELECT "
    )
    body = {"report_req": {"report": f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"}}
    uri = wire.send("POST", f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw", body).json()["uri"]
    while (ready := wire.send("GET", uri)).status_code == 202:
        pass
    first_row = ready.content.split(b"\r\n")[1].decode()
    assert re.fullmatch(r"0\.\d{4}", first_row.split('","')[8])  # Service Level: 0.8123, not 81.23%


def test_a_column_is_named_by_its_alias_else_by_its_attributes_title(flex_connection: str) -> None:
    # ..._fast_attribute_.yml: report definition 267 (label 219 "Email" in rows, no alias; metric 266
    #   aliased "sum of Lines Changed"); executing it answers a reportView whose row is titled by the
    #   attribute: {"attributeTitle": "Dev", "displayFormId": "{ws}/obj/219", "title": "Dev", ...} and
    #   whose metric by its alias: {"title": "sum of Lines Changed", "metricId": "{ws}/obj/266"}.
    #   The attribute (obj/217, attr.devs.dev_id, "Dev" in the same cassette's model) is answered in
    #   the recorded attribute shape (ATTRIBUTE_163).
    ws = FAST.rsplit("/", 1)[-1]
    grid = {"rows": [in_grid(f"{FAST}/obj/219")], "columns": ["metricGroup"],
            "metrics": [{"alias": "sum of Lines Changed", "uri": f"{FAST}/obj/266"}]}  # fmt: skip
    definition = {
        "reportDefinition": {"content": {"grid": grid, "format": "grid"}, "meta": meta("/", "u", "r")}
    }
    dev = meta(f"{FAST}/obj/217", "Dev", "attribute", "attr.devs.dev_id")
    attribute = {"attribute": {"content": {"displayForms": [LABEL_219["attributeDisplayForm"]]}, "meta": dev}}
    report = {"report": {"content": {"definitions": [f"{FAST}/obj/267"]}, "meta": meta("/", "r", "report")}}
    session = Session(Credentials("rubydev+admin@gooddata.com", "pw"), RECORDED_BASE)
    api = FlexInsightsApi(session, RECORDED_BASE)
    answers = [recorded(200, document) for document in (report, definition, LABEL_219, attribute)]

    sends, layout = scripted(api.report_layout(ws, "268"), [LOGIN_REPLY, token_reply("tt-1"), *answers])

    assert [s.request.path for s in sends[2:]] == [
        f"/gdc/md/{ws}/obj/268",
        *(f"{FAST}/obj/{n}" for n in (267, 219, 217)),
    ]
    assert layout == (
        protocol.LayoutColumn("attribute", f"{FAST}/obj/219", ("Dev", "Email")),
        protocol.LayoutColumn("metric", f"{FAST}/obj/266", ("sum of Lines Changed",)),
    )
    columns = plan_columns(["Dev", "sum of Lines Changed"], layout)
    assert [(c.type, c.reason) for c in columns] == [
        (ColumnType.TEXT, "attribute"),
        (ColumnType.NUMERIC, "metric"),
    ]

    with FlexInsightsHook().session() as client:  # the emulator names its columns the same way
        served = client.report_layout(DEMO_WORKSPACE, ALIAS_REPORT)
    assert [c.names for c in served] == [("Day",), ("Team Queue",), ("Offered",), ("Service Level",)]
