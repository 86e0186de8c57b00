"""The policy lab: the active bundle and its history, dry runs, impact analysis, activation.

Routes (``auditor`` unless said; admin implies every scope):

* ``GET /console/policy``: the active bundle (its files, read-only), its digest, the
  activations the log records (newest first), and a workbench: a candidate bundle
  (prefilled with the active one), a dry run, an impact analysis and, for admins only,
  validate and activate. ``?request_id=`` prefills the dry run with that logged intent.
* ``GET /console/policy/activations/{index}``: one ``policy`` entry and a line diff of
  its bundle against the activation before it.
* ``POST /console/api/policy/evaluate`` and ``.../impact`` (auditor), ``.../validate``
  and ``.../activate`` (admin): the JSON the page script calls.

Invariants:

* The dry run is ``POST /v1/policies/evaluate``: its route function is called with the
  same request model, so both answer alike and neither writes anything. The intent
  arrives as the text of the page's editor and is parsed here, strictly (a repeated
  member or ``NaN`` is refused as the API refuses it).
* Impact analysis is :func:`~clearance._internal.policy_impact.analyze_impact` over the
  gate's own ledger, with the home's provenance key as replay uses it; it appends
  nothing. Its window is bounded (:data:`MAX_LAST`).
* Activation is ``PUT /v1/policies``: its route function (and so the bundle desk's
  lock, the loader, the whole-directory swap and the ``policy`` entry). A bundle that
  does not load is a 422 with the loader's messages and the active bundle stays. An
  editor opened on another bundle than the active one is refused (409) rather than
  silently overwriting a newer activation.
* Every POST needs the session's CSRF header and the scope (403 otherwise, whatever
  the page offered). Bad input (JSON that does not parse, a bundle that does not load,
  a window out of range) is a 4xx JSON error with a message, never a 500.
* Diffs are of canonical documents: a ``policy`` entry holds the bundle's canonical
  document (not its files), so each side is rendered as one YAML file
  (:func:`canonical_yaml`, which loads back to the same digest) and compared line by
  line with :mod:`difflib`. Both entries are proven in the log and their digests
  recomputed before they are shown.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from clearance._internal import strict_json
from clearance._internal.canonical import json_digest
from clearance._internal.console.web import LoginRequired, Viewer, check_csrf, render, require
from clearance._internal.intent import FIELDS as INTENT_FIELDS
from clearance._internal.policy.bundle import bundle_from_document, policy_files
from clearance._internal.policy.cel_engine import CelPolicyEngine
from clearance._internal.policy.lint import lint_bundle
from clearance._internal.policy_impact import analyze_impact
from clearance._internal.sealing import PROVENANCE_PURPOSE, derive_key
from clearance._internal.server.auth import Caller
from clearance._internal.server.errors import ApiError, validation_error
from clearance._internal.server.models.admin import EvaluateRequest, PolicyBundle, PolicyFiles
from clearance._internal.server.routes import policies as policy_routes
from clearance._internal.server.routing import StrictJSONRoute
from clearance._internal.server.state import ServerState, server_state
from clearance.errors import Error, InputError, PolicyError

log = logging.getLogger("clearance.server")

router = APIRouter(include_in_schema=False)
api = APIRouter(include_in_schema=False, route_class=StrictJSONRoute)

DEFAULT_LAST: Final[int] = 500
"""Decisions an impact analysis from the page examines unless told otherwise."""
MAX_LAST: Final[int] = 5000
"""The most decisions one analysis from the page may examine (it runs in a request)."""
HISTORY_SHOWN: Final[int] = 100
"""Activations listed on the page, newest first (the rest are counted)."""
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
EXAMPLE_INTENT: Final[Mapping[str, Any]] = {
    "principal": "agent:ops-bot",
    "action": "read_file",
    "args": {"path": "reports/q3.txt"},
    "purpose": "summarize the quarterly report",
}
"""The dry run's first intent: one the example bundle allows (edit it to try others)."""

Files = Annotated[PolicyFiles, Field(min_length=1, max_length=64)]


# --- texts and diffs ------------------------------------------------------------------


def canonical_yaml(document: Mapping[str, Any]) -> str:
    """``document`` as one bundle file: YAML that loads back to the same digest."""
    return yaml.safe_dump(
        dict(document), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


DiffKind = Literal["file", "hunk", "add", "del", "ctx"]
_DIFF_KINDS: Final[Mapping[str, DiffKind]] = {"@": "hunk", "+": "add", "-": "del"}


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff: ``file`` headers, ``hunk`` (@@), ``add``, ``del``, ``ctx``."""

    kind: DiffKind
    text: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


def line_diff(old: str, new: str, old_label: str, new_label: str) -> list[DiffLine]:
    """The unified line diff of ``old`` to ``new`` (empty when they are equal)."""
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), old_label, new_label, n=3, lineterm=""
    )
    return [
        DiffLine("file" if number < 2 else _DIFF_KINDS.get(line[:1], "ctx"), line)
        for number, line in enumerate(lines)
    ]


def _loader_message(exc: PolicyError, directory: os.PathLike[str] | str) -> str:
    """The loader's message without the server's paths."""
    return str(exc).replace(f"{directory}{os.sep}", "").replace(str(directory), "the bundle")


@dataclass(frozen=True)
class ActiveFiles:
    """What the editor starts from: the policy directory's files, when they are the
    active bundle; else the active bundle's canonical document as one file."""

    files: dict[str, str]
    from_disk: bool
    problem: str | None
    """Why the files on disk are not shown (they do not load, or are another bundle)."""


def active_files(state: ServerState, digest: str, document: Mapping[str, Any]) -> ActiveFiles:
    """The active bundle as files (see :class:`ActiveFiles`)."""
    directory = state.home.policy_dir
    problem: str
    try:
        paths = policy_files(directory)
        texts = {path.name: path.read_text(encoding="utf-8") for path in paths}
        loaded = CelPolicyEngine.from_directory(directory).digest
    except PolicyError as exc:
        problem = (
            f"the files in the policy directory do not load: {_loader_message(exc, directory)}"
        )
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"the policy directory cannot be read: {type(exc).__name__}"
    else:
        if loaded == digest:
            return ActiveFiles(texts, True, None)
        problem = f"the files in the policy directory are another bundle ({loaded}), not yet active"
    return ActiveFiles({"active.yaml": canonical_yaml(document)}, False, problem)


# --- reading the log ------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """One ``policy`` entry as the history lists it."""

    digest: str
    ledger_index: int
    at: str

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Activation:
        return cls(str(item["digest"]), int(item["ledger_index"]), str(item["at"]))


def _history(state: ServerState) -> list[Activation]:
    """Every activation the log records, oldest first."""
    return [Activation.of(item) for item in state.bundles.history()]


@dataclass(frozen=True)
class LoggedBundle:
    """A ``policy`` entry's bundle, proven in the log, and whether its digest checks."""

    activation: Activation
    document: Mapping[str, Any]
    digest_checks: bool

    @property
    def text(self) -> str:
        """The document as YAML, its keys in the loader's order (the log sorts them)."""
        try:
            ordered: Mapping[str, Any] = bundle_from_document(self.document).document
        except PolicyError:
            ordered = self.document  # as logged: still shown, in the log's order
        return canonical_yaml(ordered)


def _logged_bundle(state: ServerState, activation: Activation) -> LoggedBundle:
    """The bundle of ``activation``'s entry, proven (TamperError when it does not prove)."""
    ledger = state.gate.ledger
    stored = ledger.prove(ledger.get(activation.ledger_index))
    document = stored.entry.get("bundle")
    if not isinstance(document, Mapping):
        document = {}
    checks = stored.entry.get("digest") == activation.digest == json_digest(document)
    return LoggedBundle(activation, document, checks)


def _prefill(state: ServerState, request_id: str | None) -> tuple[str, str, str | None]:
    """The dry run's intent text, trace id and a note, from a logged decision or the example."""
    example = json.dumps(EXAMPLE_INTENT, indent=2)
    if not request_id:
        return example, "", None
    if REQUEST_ID.fullmatch(request_id) is None:
        return example, "", "That request id is not well formed; here is an example intent."
    found = state.gate.ledger.find("decision", request_id)
    intent = found[-1].entry.get("intent") if found else None
    if not isinstance(intent, Mapping):
        return example, "", "No decision with that request id is logged; here is an example."
    members = {k: intent[k] for k in INTENT_FIELDS if intent.get(k) is not None}
    trace_id = str(members.pop("trace_id", ""))
    note = f"The intent of request {request_id}, as logged."
    if trace_id and not state.gate.ledger.find("trace", trace_id):
        note += " It ran in a trace of its own (none was opened), so this runs outside any trace."
        trace_id = ""
    if found[-1].entry.get("redacted"):
        note += " Its sensitive arguments are logged as salted digests: put real values back."
    return json.dumps(members, indent=2), trace_id, note


# --- pages ----------------------------------------------------------------------------


@router.get("/console/policy")
def policy_lab(
    request: Request,
    seen: Annotated[Viewer, Depends(require("auditor"))],
    request_id: Annotated[str | None, Query(max_length=200)] = None,
    activated: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The policy lab (see the module docstring)."""
    state = server_state(request)
    engine = state.gate.engine
    digest = engine.digest
    document = engine.document()
    history = _history(state)
    active_entry = next((a for a in reversed(history) if a.digest == digest), None)
    just = next((a for a in history if str(a.ledger_index) == activated), None)
    intent_text, trace_id, prefill_note = _prefill(state, request_id)
    newest = list(reversed(history))
    return render(
        request,
        "policy.html",
        seen,
        {
            "digest": digest,
            "document": document,
            "active_entry": active_entry,
            "active": active_files(state, digest, document),
            "history": newest[:HISTORY_SHOWN],
            "older": max(0, len(newest) - HISTORY_SHOWN),
            "previous": {a.ledger_index: b for a, b in zip(history[1:], history, strict=False)},
            "just_activated": just,
            "intent_text": intent_text,
            "trace_id": trace_id,
            "prefill_note": prefill_note,
            "default_last": DEFAULT_LAST,
            "max_last": MAX_LAST,
            "may_activate": seen.may("admin"),
        },
    )


@router.get("/console/policy/activations/{index}")
def activation_diff(
    request: Request, index: str, seen: Annotated[Viewer, Depends(require("auditor"))]
) -> Response:
    """One activation and the line diff of its bundle against the one before it."""
    state = server_state(request)
    history = _history(state)
    position = next((n for n, a in enumerate(history) if str(a.ledger_index) == index), None)
    if position is None:
        return render(
            request,
            "policy_diff.html",
            seen,
            {"error": "The log holds no policy activation at that index.", "entry": None},
            status_code=404,
        )
    try:
        entry = _logged_bundle(state, history[position])
        before = _logged_bundle(state, history[position - 1]) if position > 0 else None
    except Error as exc:
        return render(
            request,
            "policy_diff.html",
            seen,
            {"error": f"The log cannot show this activation: {exc}", "entry": None},
            status_code=503,
        )
    old_label = (
        f"entry {before.activation.ledger_index} ({before.activation.digest})"
        if before is not None
        else "(no earlier activation)"
    )
    new_label = f"entry {entry.activation.ledger_index} ({entry.activation.digest})"
    lines = line_diff(before.text if before else "", entry.text, old_label, new_label)
    following = history[position + 1] if position + 1 < len(history) else None
    return render(
        request,
        "policy_diff.html",
        seen,
        {
            "error": None,
            "entry": entry,
            "before": before,
            "following": following,
            "lines": lines,
            "added": sum(1 for line in lines if line.kind == "add"),
            "removed": sum(1 for line in lines if line.kind == "del"),
            "active_digest": state.gate.engine.digest,
        },
    )


# --- the page script's JSON -----------------------------------------------------------


def acting(*scopes: str) -> Callable[[Request], Viewer]:
    """A dependency: a logged-in viewer with one of ``scopes`` whose request carries the
    session's CSRF header (401, 403 otherwise; checked before the body is read)."""
    needed = require(*scopes)

    def dependency(request: Request) -> Viewer:
        seen = needed(request)
        check_csrf(request, seen)
        return seen

    return dependency


_M = TypeVar("_M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BundleIn(_Body):
    """A candidate bundle: every file, by name (as ``PUT /v1/policies`` takes it)."""

    files: Files


class EvaluateIn(_Body):
    """A dry run from the page: the intent editor's text, a trace, an optional candidate."""

    intent: Annotated[str, Field(max_length=1 << 20)]
    trace_id: Annotated[str, Field(max_length=128)] | None = None
    """Evaluate within this trace (replaces the intent's ``trace_id``); empty: none."""
    files: Files | None = None
    """The candidate bundle; None evaluates under the active one."""


class ImpactIn(BundleIn):
    """An impact analysis: the candidate and how many of the newest decisions to examine."""

    last: Annotated[int, Field(ge=1, le=MAX_LAST)] = DEFAULT_LAST


class ActivateIn(BundleIn):
    """An activation; ``based_on`` is the digest the editor was opened on (409 if stale)."""

    based_on: Annotated[str, Field(max_length=100)] | None = None


def _validated(model: type[_M], value: Mapping[str, Any]) -> _M:
    """``model`` of ``value``, or the API's 422 naming the first bad field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise validation_error(RequestValidationError(errors)) from None


def _intent_object(text: str) -> dict[str, Any]:
    """The intent editor's text as a JSON object; 422 saying what is wrong otherwise."""
    try:
        value = strict_json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            "invalid_input",
            f"the intent is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            field="intent",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            "invalid_input", f"the intent is not valid JSON: {exc}", field="intent"
        ) from None
    if not isinstance(value, dict):
        raise ApiError("invalid_input", "the intent must be a JSON object", field="intent")
    return value


def _candidate(state: ServerState, files: Mapping[str, str]) -> CelPolicyEngine:
    """The candidate bundle's engine; 422 with the loader's messages when it does not load."""
    try:
        return state.bundles.load(files)
    except (PolicyError, InputError) as exc:
        raise ApiError(
            "invalid_input", f"the candidate bundle was refused: {exc}", field="files"
        ) from None


def _caller(seen: Viewer) -> Caller:
    """The API's caller for the viewer's key (the session re-authenticated it)."""
    if seen.key is None:
        raise LoginRequired
    return Caller(seen.key)


def _provenance_key(state: ServerState) -> bytes | None:
    """The key trace fingerprints are made with (None: analyses say what they cannot tell)."""
    try:
        return derive_key(state.home.read_log_skey(), PROVENANCE_PURPOSE)
    except Error as exc:
        log.warning("impact analysis without the provenance key: %s", exc)
        return None


def _diff_to_active(state: ServerState, candidate: CelPolicyEngine) -> list[dict[str, str]]:
    active = state.gate.engine
    return [
        line.to_json()
        for line in line_diff(
            canonical_yaml(active.document()),
            canonical_yaml(candidate.document()),
            f"active ({active.digest})",
            f"candidate ({candidate.digest})",
        )
    ]


@api.post("/console/api/policy/evaluate")
def evaluate(
    body: EvaluateIn, request: Request, seen: Annotated[Viewer, Depends(acting("auditor"))]
) -> dict[str, Any]:
    """A dry run, answered by ``POST /v1/policies/evaluate``'s own code."""
    intent = _intent_object(body.intent)
    if body.trace_id:
        intent["trace_id"] = body.trace_id
    dry_run = _validated(EvaluateRequest, {"intent": intent, "files": body.files})
    answer = policy_routes.evaluate(dry_run, request, _caller(seen))
    return {**answer, "candidate": body.files is not None}


@api.post("/console/api/policy/impact")
def impact(
    body: ImpactIn, request: Request, seen: Annotated[Viewer, Depends(acting("auditor"))]
) -> dict[str, Any]:
    """What the candidate would change among the newest ``last`` logged decisions."""
    state = server_state(request)
    candidate = _candidate(state, body.files)
    report = analyze_impact(
        state.gate.ledger, candidate, last=body.last, provenance_key=_provenance_key(state)
    )
    return {
        **report.to_json(),
        "active_digest": state.gate.engine.digest,
        "diff": _diff_to_active(state, candidate),
    }


@api.post("/console/api/policy/validate")
def validate(
    body: BundleIn, request: Request, seen: Annotated[Viewer, Depends(acting("admin"))]
) -> dict[str, Any]:
    """Load the candidate as activation would, change nothing; lint warnings beside it."""
    state = server_state(request)
    candidate = _candidate(state, body.files)
    bundle = candidate.bundle
    return {
        "digest": candidate.digest,
        "active_digest": state.gate.engine.digest,
        "rules": len(bundle.rules),
        "tools": len(bundle.tools),
        "warnings": [warning.render() for warning in lint_bundle(bundle)],
    }


@api.post("/console/api/policy/activate")
def activate(
    body: ActivateIn, request: Request, seen: Annotated[Viewer, Depends(acting("admin"))]
) -> dict[str, Any]:
    """Activate the candidate through ``PUT /v1/policies``'s own code."""
    state = server_state(request)
    previous = state.gate.engine.digest
    if body.based_on is not None and body.based_on != previous:
        raise ApiError(
            "conflict",
            f"the active bundle changed to {previous} since this editor was opened on "
            f"{body.based_on}; reload the page and review the candidate again",
        )
    bundle = _validated(PolicyBundle, {"files": body.files})
    result = policy_routes.put_policies(bundle, request, _caller(seen))
    log.info(
        "console: %s activated policy %s (ledger index %s; was %s)",
        seen.principal,
        result["digest"],
        result["ledger_index"],
        previous,
    )
    return {**result, "previous_digest": previous, "changed": result["digest"] != previous}


router.include_router(api)
