"""The emulator's memory: logins, tokens, exports and the requests it saw, behind one lock."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_flexinsights.emulator.model import EmulatorConfig, RequestRecord


@dataclass
class ExportJob:
    """One raw export started with ``execute/raw``: what it covers and when it is ready."""

    workspace_id: str
    report_id: str
    date_from: str
    date_to: str
    query: str
    created: float
    ready_after: float  # seconds after creation before the result is ready
    polls: int = 0
    where: dict[str, frozenset[str]] = field(default_factory=dict)  # list filters: column -> values


@dataclass
class Login:
    """One SST's owner and expiry."""

    email: str
    profile_id: str
    expires: float


class EmulatorState:
    """Everything the server knows, behind one lock (the server is threaded)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.logins: dict[str, Login] = {}  # SST -> login
        self.tts: dict[str, tuple[str, float]] = {}  # TT -> (SST, expiry)
        self.tt_uses: dict[str, int] = {}
        self.exports: dict[str, ExportJob] = {}
        self.element_lookups: dict[str, tuple[list[int], Any]] = {}  # task -> (statuses left, answer)
        self.requests: list[RequestRecord] = []
        self.issued_secrets: set[str] = set()  # every SST and TT
        self.issued_ssts: set[str] = set()
        self.tts_by_client: collections.Counter[str] = collections.Counter()  # TTs minted, by User-Agent
        self.logouts = 0
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def expire_tokens(self, *, sessions: bool) -> None:
        """Expire every TT (as ten minutes would), and every SST too if ``sessions``."""
        with self.lock:
            self.tts.clear()
            if sessions:
                self.logins.clear()

    def label_uri(self, workspace_id: str) -> str:
        return f"/gdc/md/{workspace_id}/obj/{1000 + sum(workspace_id.encode()) % 9000}"

    def identifier_uri(self, workspace_id: str, identifier: str) -> str:
        """The URI ``identifiers`` gives: an attribute label's own, else the date label's."""
        label = self.config.workspaces[workspace_id].labels.get(identifier)
        return label.uri(workspace_id) if label is not None else self.label_uri(workspace_id)

    def today(self) -> dt.date:
        return self.config.today or dt.datetime.now(dt.UTC).date()
