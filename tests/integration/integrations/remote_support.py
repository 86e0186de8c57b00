"""What the integrations' tests against a real ``clearance serve`` share: a gateway whose
only bundle is the scenario's, Clients of it, and its log as the auditor reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from clearance import Client
from tests.integration.server.support import KEYS, Served, create_keys, free_port, make_home

ClientFor = Callable[[str], Client]
"""Makes a Client of the gateway with the named key."""

AGENT = KEYS["agent"][1]
ORCHESTRATOR = KEYS["orchestrator"][1]


def only_bundle(home: Path, name: str, bundle: str) -> None:
    """Make ``bundle`` (written as ``policies/<name>``) the home's only policy file."""
    for old in (home / "policies").glob("*.y*ml"):
        old.unlink()
    (home / "policies" / name).write_text(bundle, encoding="utf-8")


def gateway_with(
    base: Path,
    name: str,
    bundle: str,
    keys: Mapping[str, tuple[tuple[str, ...], str]] = KEYS,
) -> Iterator[Served]:
    """A started ``clearance serve`` over a new home under ``base`` whose only bundle is
    ``bundle``, with ``keys``; stopped when the generator closes (a fixture's body)."""
    home = make_home(base / "home")
    only_bundle(home, name, bundle)
    served = Served(home=home, port=free_port(), keys=create_keys(home, keys))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def clients_of(gateway: Served, spool: Path) -> Iterator[ClientFor]:
    """``client_for(key_name)``: Clients of ``gateway``, closed when the generator closes."""
    opened: list[Client] = []

    def make(key: str) -> Client:
        client = Client(gateway.url, gateway.keys[key], spool_dir=spool / f"spool-{key}")
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def log_entries(gateway: Served) -> list[dict[str, Any]]:
    """Every entry of the gateway's log, read page by page with the auditor key."""
    entries: list[dict[str, Any]] = []
    with gateway.client("auditor") as auditor:
        while True:
            page = auditor.get(
                "/v1/log/entries", params={"start": len(entries), "limit": 1000}
            ).json()
            entries += [e["entry"] for e in page["entries"]]
            if len(entries) >= page["size"]:
                return entries


class Ledger:
    """The gateway's log as the auditor reads it, from the size it had at creation."""

    def __init__(self, gateway: Served) -> None:
        self.gateway = gateway
        self.start = len(log_entries(gateway))

    def new(self, kind: str) -> list[dict[str, Any]]:
        """The entries of type ``kind`` appended since this object was made."""
        return [e for e in log_entries(self.gateway)[self.start :] if e["type"] == kind]

    def decisions(self) -> list[tuple[str, str, str]]:
        """``(principal, action, effect)`` of the new decisions."""
        return [
            (e["intent"]["principal"], e["intent"]["action"], e["effect"])
            for e in self.new("decision")
        ]

    def request(self, request_id: str) -> dict[str, Any]:
        """``GET /v1/requests/{request_id}`` as the auditor."""
        with self.gateway.client("auditor") as auditor:
            reply = auditor.get(f"/v1/requests/{request_id}")
        assert reply.status_code == 200, reply.text
        record: dict[str, Any] = reply.json()
        return record
