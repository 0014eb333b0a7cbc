"""The control API, for tests running the emulator in another process: what it saw and holds."""

from __future__ import annotations

from dataclasses import asdict

from airflow_provider_flexinsights.emulator.exchange import Exchange


def requests_seen(exchange: Exchange) -> None:
    with exchange.state.lock:
        records = [asdict(r) for r in exchange.state.requests]
    exchange.send_json(200, records)


def exports_started(exchange: Exchange) -> None:
    with exchange.state.lock:
        document = {
            f"/gdc/projects/{e.workspace_id}/execute/raw/{export_id}?{e.query}": {
                "ready_at": e.created + e.ready_after,
                "polls": e.polls,
            }
            for export_id, e in exchange.state.exports.items()
        }
    exchange.send_json(200, document)


def session_counts(exchange: Exchange) -> None:
    with exchange.state.lock:
        state = exchange.state
        document = {
            "live_sessions": len(state.logins),
            "logouts": state.logouts,
            "logins": len(state.issued_ssts),
            "tts_by_client": dict(state.tts_by_client),  # TTs minted, by User-Agent
        }
    exchange.send_json(200, document)
