"""The emulator is strict: malformed requests get the 400 a real client bug deserves."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_flexinsights.emulator import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
)


@pytest.fixture
def api(emulator: Emulator) -> Iterator[requests.Session]:
    """A raw HTTP session with a valid TT, to send requests the provider would never send."""
    http = requests.Session()
    login = {
        "postUserLogin": {"login": DEMO_EMAIL, "password": DEMO_PASSWORD, "remember": 0, "verify_level": 2}
    }
    sst = http.post(f"{emulator.url}/gdc/account/login", json=login).json()["userLogin"]["token"]
    tt = http.get(f"{emulator.url}/gdc/account/token", headers={"X-GDC-AuthSST": sst}).json()["userToken"][
        "token"
    ]
    http.headers["X-GDC-AuthTT"] = tt
    yield http
    http.close()


def post(api: requests.Session, emulator: Emulator, path: str, body: Any) -> requests.Response:
    return api.post(f"{emulator.url}{path}", json=body)


EXECUTE = f"/gdc/app/projects/{DEMO_WORKSPACE}/execute/raw"
REPORT = f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/gdc/account/login", {"postUserLogin": {"login": DEMO_EMAIL, "password": "x"}}, "verify_level 2"),
        (
            f"/gdc/md/{DEMO_WORKSPACE}/identifiers",
            {"identifierToUri": "date.date.mmddyyyy"},
            "a list of identifiers",
        ),
        (EXECUTE, {"report": REPORT}, "Expected report_req"),
        (EXECUTE, {"report_req": {"report": "/gdc/md/other/obj/1"}}, "is not an object of project"),
        (
            EXECUTE,
            {"report_req": {"report": REPORT, "context": {"filters": [{"uri": "/gdc/md/x/obj/1"}]}}},
            "exactly uri and constraint",
        ),
        (
            EXECUTE,
            {
                "report_req": {
                    "report": REPORT,
                    "context": {"filters": [{"uri": "/gdc/md/x/obj/1", "constraint": {}}]},
                }
            },
            "Attribute display form /gdc/md/x/obj/1 not found",
        ),
    ],
    ids=[
        "login-shape",
        "identifiers-shape",
        "no-report_req",
        "foreign-report",
        "filter-shape",
        "unknown-label",
    ],
)
def test_malformed_requests_get_400_with_a_gooddata_error(
    api: requests.Session, emulator: Emulator, path: str, body: Any, message: str
) -> None:
    answer = post(api, emulator, path, body)

    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"] % tuple(answer.json()["error"]["parameters"])
    assert answer.headers["X-GDC-Request"].startswith("emu-")


def test_interval_bounds_must_be_real_ordered_dates(api: requests.Session, emulator: Emulator) -> None:
    label = post(
        api, emulator, f"/gdc/md/{DEMO_WORKSPACE}/identifiers", {"identifierToUri": ["date.date.mmddyyyy"]}
    )
    uri = label.json()["identifiers"][0]["uri"]

    def execute(date_from: str, date_to: str) -> int:
        constraint = {"type": "interval", "from": date_from, "to": date_to}
        body = {
            "report_req": {"report": REPORT, "context": {"filters": [{"uri": uri, "constraint": constraint}]}}
        }
        return post(api, emulator, EXECUTE, body).status_code

    assert execute("2024-02-30", "2024-03-01") == 400
    assert execute("2024-03-02", "2024-03-01") == 400
    assert execute("2024-03-01", "2024-03-02") == 201


def test_export_uri_must_keep_its_query_string(api: requests.Session, emulator: Emulator) -> None:
    answer = post(api, emulator, EXECUTE, {"report_req": {"report": REPORT}})
    uri = answer.json()["uri"]

    assert answer.status_code == 201 and answer.headers["Location"] == uri
    assert api.get(f"{emulator.url}{uri.split('?')[0]}").status_code == 400
    assert api.get(f"{emulator.url}{uri}").status_code == 202


def test_requests_without_a_valid_tt_get_the_tt_challenge(emulator: Emulator) -> None:
    answer = requests.post(f"{emulator.url}{EXECUTE}", json={"report_req": {"report": REPORT}}, timeout=5)

    assert answer.status_code == 401
    assert "cookie=GDCAuthTT" in answer.headers["WWW-Authenticate"]


def test_logout_deletes_the_sst_and_its_tts(api: requests.Session, emulator: Emulator) -> None:
    assert emulator.live_sessions == 1
    sst = next(iter(emulator.state.logins))
    profile = emulator.state.logins[sst].profile_id

    assert (
        api.delete(f"{emulator.url}/gdc/account/login/{profile}", headers={"X-GDC-AuthSST": sst}).status_code
        == 204
    )
    assert emulator.live_sessions == 0
    assert post(api, emulator, EXECUTE, {"report_req": {"report": REPORT}}).status_code == 401


def test_command_line_emulator_serves_on_the_port_it_announces() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_flexinsights.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        login = {
            "postUserLogin": {
                "login": ready["login"],
                "password": ready["password"],
                "remember": 0,
                "verify_level": 2,
            }
        }
        answer = requests.post(f"{ready['url']}/gdc/account/login", json=login, timeout=5)
        state = requests.get(f"{ready['url']}/_emulator/state", timeout=5).json()
        logged = requests.get(f"{ready['url']}/_emulator/requests", timeout=5).json()
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert ready["workspace_id"] == DEMO_WORKSPACE
    assert answer.status_code == 200 and state["live_sessions"] == 1
    assert [(r["endpoint"], r["status"]) for r in logged] == [("login", 200)]
    assert logged[0]["body"]["postUserLogin"]["password"] == "***"


def test_a_tt_stops_working_after_its_allowed_uses(api: requests.Session, emulator: Emulator) -> None:
    emulator.config.tt_max_uses = 2
    identifiers = f"/gdc/md/{DEMO_WORKSPACE}/identifiers"

    statuses = [post(api, emulator, identifiers, {"identifierToUri": []}).status_code for _ in range(3)]

    assert statuses == [200, 200, 401]


def test_faults_can_be_limited_to_one_workspace(api: requests.Session, emulator: Emulator) -> None:
    from airflow_provider_flexinsights.emulator import Fault, Workspace

    other = "otherworkspace000000000000000001"
    emulator.config.workspaces[other] = Workspace()
    emulator.config.faults.append(Fault("identifiers", status=503, count=99, workspace=other))

    def resolve(workspace: str) -> int:
        return post(api, emulator, f"/gdc/md/{workspace}/identifiers", {"identifierToUri": []}).status_code

    assert (resolve(DEMO_WORKSPACE), resolve(other)) == (200, 503)


def test_a_stalled_download_sends_its_first_bytes_then_waits_then_the_rest(
    api: requests.Session, emulator: Emulator
) -> None:
    import time

    from airflow_provider_flexinsights.emulator import Fault

    emulator.config.pending_polls = 0
    emulator.config.faults.append(Fault("export", "stall", after_bytes=100, seconds=1.5))
    uri = post(api, emulator, EXECUTE, {"report_req": {"report": REPORT}}).json()["uri"]

    with api.get(f"{emulator.url}{uri}", stream=True) as answer:
        first = answer.raw.read(100)
        started = time.monotonic()
        rest = answer.raw.read()
        waited = time.monotonic() - started

    assert answer.status_code == 200
    assert first + rest == api.get(f"{emulator.url}{uri}").content  # whole: as served without the stall
    assert waited >= 1.4  # the rest was held back: a client is caught mid-download


# --- Discovery: the metadata API (report list, object lookups) -----------------------------------

QUERY_REPORTS = f"/gdc/md/{DEMO_WORKSPACE}/query/reports"
UNKNOWN_WORKSPACE = "abcdefghijklmnopqrstuvwxyz012345"


def test_report_list_has_every_known_report_with_title_and_last_change(
    api: requests.Session, emulator: Emulator
) -> None:
    from airflow_provider_flexinsights.emulator import (
        AGENT_REPORT,
        ALIAS_REPORT,
        CHANNEL_REPORT,
        EMPTY_REPORT,
        EU_DATE_REPORT,
        REORDERED_REPORT,
    )

    answer = api.get(f"{emulator.url}{QUERY_REPORTS}")

    assert answer.status_code == 200 and answer.headers["X-GDC-Request"].startswith("emu-")
    entries = answer.json()["query"]["entries"]
    assert [e["link"] for e in entries] == [
        f"/gdc/md/{DEMO_WORKSPACE}/obj/{report}"
        for report in (
            QUEUE_REPORT,
            EMPTY_REPORT,
            AGENT_REPORT,
            CHANNEL_REPORT,
            REORDERED_REPORT,
            ALIAS_REPORT,
            EU_DATE_REPORT,
        )
    ]
    queue = entries[0]
    assert queue["title"] == "Queue performance, 15 minute intervals"
    assert queue["updated"] == "2024-03-14 16:42:07" and queue["category"] == "report"
    assert queue["author"].startswith("/gdc/account/profile/") and len(queue["identifier"]) == 12
    assert answer.json()["query"]["meta"]["category"] == "MD::Query::Object"
    assert emulator.calls()[-1] == ("query", 200)


def test_report_list_includes_reports_added_to_the_workspace(
    api: requests.Session, emulator: Emulator
) -> None:
    from airflow_provider_flexinsights.emulator import BULK_REPORT, Report

    bulk = Report("Bulk queue report", kind="bulk", size_bytes=1, updated="2024-05-01 00:00:00")
    emulator.config.workspaces[DEMO_WORKSPACE].reports[BULK_REPORT] = bulk

    entries = api.get(f"{emulator.url}{QUERY_REPORTS}").json()["query"]["entries"]

    assert (entries[-1]["link"].rsplit("/", 1)[-1], entries[-1]["title"], entries[-1]["updated"]) == (
        BULK_REPORT,
        "Bulk queue report",
        "2024-05-01 00:00:00",
    )


@pytest.mark.parametrize(
    "path",
    [
        f"/gdc/md/{UNKNOWN_WORKSPACE}/query/reports",
        f"/gdc/md/{UNKNOWN_WORKSPACE}/obj/{QUEUE_REPORT}",
    ],
    ids=["report-list", "object"],
)
def test_metadata_of_an_unknown_workspace_is_a_404_naming_it(
    api: requests.Session, emulator: Emulator, path: str
) -> None:
    answer = api.get(f"{emulator.url}{path}")
    error = answer.json()["error"]

    assert answer.status_code == 404
    assert error["message"] % tuple(error["parameters"]) == (
        f"Project '{UNKNOWN_WORKSPACE}' does not exist or you have no access to it"
    )


def test_a_report_object_carries_its_meta(api: requests.Session, emulator: Emulator) -> None:
    listed = api.get(f"{emulator.url}{QUERY_REPORTS}").json()["query"]["entries"][0]

    answer = api.get(f"{emulator.url}{REPORT}")

    meta = answer.json()["report"]["meta"]
    assert answer.status_code == 200
    assert meta["uri"] == REPORT and meta["category"] == "report"
    assert {k: meta[k] for k in ("title", "updated", "identifier")} == {
        k: listed[k] for k in ("title", "updated", "identifier")
    }


def test_the_label_of_a_known_identifier_is_an_object_by_uri_and_by_identifier(
    api: requests.Session, emulator: Emulator
) -> None:
    label = post(
        api, emulator, f"/gdc/md/{DEMO_WORKSPACE}/identifiers", {"identifierToUri": ["date.date.mmddyyyy"]}
    ).json()["identifiers"][0]["uri"]

    by_uri = api.get(f"{emulator.url}{label}").json()
    by_identifier = api.get(
        f"{emulator.url}/gdc/md/{DEMO_WORKSPACE}/obj/identifier:date.date.mmddyyyy"
    ).json()

    meta = by_uri["attributeDisplayForm"]["meta"]
    assert by_identifier == by_uri
    assert (meta["uri"], meta["identifier"], meta["category"]) == (
        label,
        "date.date.mmddyyyy",
        "attributeDisplayForm",
    )
    assert meta["title"] == "Date (mm/dd/yyyy)"


def test_each_attribute_label_is_its_own_object_titled_like_its_column(
    api: requests.Session, emulator: Emulator
) -> None:
    from airflow_provider_flexinsights.emulator import CHANNEL_LABEL, QUEUE_LABEL

    identifiers = {"identifierToUri": ["date.date.mmddyyyy", QUEUE_LABEL, CHANNEL_LABEL]}
    uris = {
        item["identifier"]: item["uri"]
        for item in post(api, emulator, f"/gdc/md/{DEMO_WORKSPACE}/identifiers", identifiers).json()[
            "identifiers"
        ]
    }

    metas = {
        i: api.get(f"{emulator.url}{uri}").json()["attributeDisplayForm"]["meta"] for i, uri in uris.items()
    }

    assert len(set(uris.values())) == 3
    assert {i: (m["identifier"], m["title"], m["uri"]) for i, m in metas.items()} == {
        "date.date.mmddyyyy": ("date.date.mmddyyyy", "Date (mm/dd/yyyy)", uris["date.date.mmddyyyy"]),
        QUEUE_LABEL: (QUEUE_LABEL, "Queue", uris[QUEUE_LABEL]),
        CHANNEL_LABEL: (CHANNEL_LABEL, "Channel", uris[CHANNEL_LABEL]),
    }


@pytest.mark.parametrize("object_id", ["999999", "identifier:label.nowhere", "identifier:"])
def test_unknown_objects_are_a_strict_404(api: requests.Session, emulator: Emulator, object_id: str) -> None:
    answer = api.get(f"{emulator.url}/gdc/md/{DEMO_WORKSPACE}/obj/{object_id}")
    error = answer.json()["error"]

    assert answer.status_code == 404
    assert error["message"] % tuple(error["parameters"]) == (
        f"Object /gdc/md/{DEMO_WORKSPACE}/obj/{object_id} not found"
    )


@pytest.mark.parametrize("path", [QUERY_REPORTS, REPORT])
def test_metadata_needs_a_valid_tt(emulator: Emulator, path: str) -> None:
    answer = requests.get(f"{emulator.url}{path}", timeout=5)

    assert answer.status_code == 401
    assert "cookie=GDCAuthTT" in answer.headers["WWW-Authenticate"]


def test_each_request_record_names_the_client_port_so_a_test_finds_the_process_that_sent_it(
    emulator: Emulator,
) -> None:
    host, port = emulator.url.removeprefix("http://").split(":")
    ports = []
    for _ in range(2):
        client = http.client.HTTPConnection(host, int(port), timeout=5)
        client.connect()
        ports.append(client.sock.getsockname()[1])
        client.request("GET", "/gdc/account/token")
        client.getresponse().read()
        client.close()

    assert ports[0] != ports[1]
    assert [r.client_port for r in emulator.requests] == ports
