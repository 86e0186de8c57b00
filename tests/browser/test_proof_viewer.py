"""The proof viewer (/console/proof) in Chromium against a real server.

Receipts come from the server's own API (decisions made over HTTP with an agent key).
The page must verify them in the browser without a request, name the failing step of
every tampered variant exactly as the Python reference (``verify_receipt`` /
``verify_tlog_proof``) does, check consistency with the log's latest checkpoint on
request, and work from a copy saved to disk.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from clearance import verify_receipt, verify_tlog_proof
from clearance._internal import strict_json
from clearance._internal.canonical import canonical_json
from clearance._internal.console.web import HERE
from clearance._internal.ledger.checkpoint import NoteSigner
from clearance._internal.ledger.receipts import _json_int
from clearance.errors import InputError, ProofError
from tests.browser.conftest import shoot
from tests.integration.server.support import Served

FINAL = re.compile(r"^(ok|fail|unsupported)$")
ODD_ARGS = (
    '{"path":"ü/日本😀","n":{"f":1.5,"big":1e21,"neg":-0.0,"tiny":5e-324,'
    '"list":[1,2.25,null,true,"\\u0007\\u2028"],"deep":{"a":{"b":[{"c":-1.0e-7}]}}}}'
)


@dataclass(frozen=True)
class Receipts:
    """Receipts served by the log for one allowed and one oddly-argued decision."""

    vkey: str
    allowed_json: str
    allowed_tlog: str
    odd_json: str
    odd_tlog: str


def _decide(agent: httpx.Client, body: str) -> str:
    response = agent.post(
        "/v1/authorize", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 403), response.text
    request_id = response.json()["request_id"]
    assert isinstance(request_id, str)
    return request_id


def _receipt(auditor: httpx.Client, request_id: str, fmt: str) -> str:
    response = auditor.get(
        f"/v1/receipts/{request_id}", params={"entry": "decision", "format": fmt}
    )
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture(scope="module")
def receipts(console: Served) -> Receipts:
    with console.client("agent") as agent, console.client("auditor") as auditor:
        allowed = _decide(agent, '{"action":"read_file","args":{"path":"notes/a.txt"}}')
        odd = _decide(agent, '{"action":"delete_file","args":' + ODD_ARGS + "}")
        for n in range(3):
            _decide(agent, f'{{"action":"read_file","args":{{"path":"more/{n}"}}}}')
        vkey = httpx.get(f"{console.url}/v1/log/vkey").text.strip()
        return Receipts(
            vkey=vkey,
            allowed_json=_receipt(auditor, allowed, "json"),
            allowed_tlog=_receipt(auditor, allowed, "tlog-proof"),
            odd_json=_receipt(auditor, odd, "json"),
            odd_tlog=_receipt(auditor, odd, "tlog-proof"),
        )


@pytest.fixture
def viewer(page: Page, console: Served) -> Page:
    page.goto(f"{console.url}/console/proof")
    expect(page.locator("#support")).not_to_contain_text("Checking")
    return page


def verify_in_page(page: Page, receipt: str, vkey: str, origin: str = "") -> tuple[str, str]:
    """Fill the form, press Verify; returns (verdict, failed step)."""
    page.get_by_label("Receipt: JSON or C2SP tlog-proof text").fill(receipt)
    page.get_by_label("The log's verifier key (vkey)").fill(vkey)
    page.get_by_label("Expected log origin (optional)").fill(origin)
    page.get_by_role("button", name="Verify").click()
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-verdict", FINAL)
    return verdict.get_attribute("data-verdict") or "", verdict.get_attribute("data-step") or ""


def python_verdict(receipt: str, vkey: str, origin: str | None = None) -> tuple[str, str]:
    """The reference's verdict in the page's terms."""
    try:
        if receipt.startswith("c2sp.org/"):
            verify_tlog_proof(receipt, vkey, origin=origin)
        else:
            verify_receipt(receipt, vkey, origin=origin)
    except ProofError as exc:
        return "fail", exc.step
    return "ok", ""


def statuses(page: Page, list_id: str = "steps") -> dict[str, str]:
    rows = page.locator(f"#{list_id} > li")
    return {
        rows.nth(i).get_attribute("data-row") or "": rows.nth(i).get_attribute("data-status") or ""
        for i in range(rows.count())
    }


def edited(receipt: str, change: Callable[[dict[str, Any]], None]) -> str:
    document = json.loads(receipt)
    change(document)
    return json.dumps(document)


def flip_char(text: str, at: int) -> str:
    """``text`` with the character at ``at`` replaced by another base64 letter."""
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def watch_requests(page: Page) -> list[str]:
    seen: list[str] = []

    def record(request: Request) -> None:
        seen.append(request.url)

    page.on("request", record)
    return seen


# --- verifying ----------------------------------------------------------------------------


def test_a_valid_json_receipt_verifies_every_step_without_a_request(
    viewer: Page, receipts: Receipts
) -> None:
    requests = watch_requests(viewer)
    assert verify_in_page(viewer, receipts.allowed_json, receipts.vkey) == ("ok", "")
    shown = statuses(viewer)
    assert set(shown.values()) == {"pass"}, shown
    assert list(shown) == [
        "parse", "vkey", "signature", "checkpoint", "tree-size", "leaf-index",
        "canonical", "leaf-hash", "path", "root",
    ]  # fmt: skip
    receipt = json.loads(receipts.allowed_json)
    path_rows = viewer.locator("li[data-row=path] tr[data-path-step]")
    expect(path_rows).to_have_count(len(receipt["inclusion_proof"]))
    for i, sibling in enumerate(receipt["inclusion_proof"]):
        expect(path_rows.nth(i)).to_contain_text(sibling)
    key_id = receipts.vkey.split("+")[1]
    expect(viewer.locator("li[data-row=vkey]")).to_contain_text(key_id)
    signed_root = receipt["checkpoint"].split("\n")[2]
    expect(viewer.locator("li[data-row=root]")).to_contain_text(signed_root)
    expect(viewer.locator("#verdict")).to_contain_text(f"Entry {receipt['leaf_index']} is in")
    assert requests == [], f"verifying asked the network: {requests}"
    shoot(viewer, "proof-valid")


def test_an_uploaded_tlog_proof_verifies(viewer: Page, receipts: Receipts, tmp_path: Path) -> None:
    proof_file = tmp_path / "receipt.proof"
    proof_file.write_text(receipts.odd_tlog, encoding="utf-8")
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(receipts.vkey + "\n", encoding="utf-8")
    viewer.get_by_label("Or upload a receipt file").set_input_files(proof_file)
    viewer.get_by_label("Or upload a vkey file").set_input_files(vkey_file)
    expect(viewer.get_by_label("The log's verifier key (vkey)")).to_have_value(receipts.vkey)
    viewer.get_by_label("The log's verifier key (vkey)").press("Enter")  # keyboard submit
    expect(viewer.locator("#verdict")).to_have_attribute("data-verdict", "ok")
    shown = statuses(viewer)
    assert set(shown.values()) == {"pass"}, shown
    assert "entry-present" in shown
    expect(viewer.locator("li[data-row=tree-size]")).to_contain_text("signed checkpoint")
    expect(viewer.locator("li[data-row=canonical]")).to_contain_text("delete_file")


def test_tampering_fails_at_the_step_that_names_it(viewer: Page, receipts: Receipts) -> None:
    def set_arg(receipt: dict[str, Any]) -> None:
        receipt["entry"]["intent"]["args"]["path"] = "notes/b.txt"

    def bump_size(receipt: dict[str, Any]) -> None:
        receipt["tree_size"] += 1

    def bend_proof(receipt: dict[str, Any]) -> None:
        receipt["inclusion_proof"][0] = flip_char(receipt["inclusion_proof"][0], 10)

    def forge_signature(receipt: dict[str, Any]) -> None:
        text, _, signature = receipt["checkpoint"].rpartition("\u2014 ")
        name, _, encoded = signature.partition(" ")
        receipt["checkpoint"] = f"{text}\u2014 {name} {flip_char(encoded, 30)}"

    other_key = NoteSigner.generate("another.log/key").vkey()
    cases = [
        ("entry", edited(receipts.allowed_json, set_arg), receipts.vkey, "inclusion", "root"),
        ("signature", edited(receipts.allowed_json, forge_signature), receipts.vkey,
         "signature", "signature"),
        ("vkey", receipts.allowed_json, other_key, "vkey", "vkey"),
        ("proof", edited(receipts.allowed_json, bend_proof), receipts.vkey, "inclusion", "root"),
        ("size", edited(receipts.allowed_json, bump_size), receipts.vkey, "tree-size",
         "tree-size"),
    ]  # fmt: skip
    for name, receipt, vkey, step, row in cases:
        assert python_verdict(receipt, vkey) == ("fail", step), name
        assert verify_in_page(viewer, receipt, vkey) == ("fail", step), name
        shown = statuses(viewer)
        ids = list(shown)
        failed = ids.index(row)
        assert shown[row] == "fail", (name, shown)
        assert all(shown[i] == "pass" for i in ids[:failed]), (name, shown)
        assert all(shown[i] == "notreached" for i in ids[failed + 1 :]), (name, shown)
        failing = viewer.locator(f"#steps > li[data-row='{row}']")
        expect(failing).to_have_attribute("data-step", step)
        expect(failing).to_have_class(re.compile(r"\bfail\b"))
        expect(viewer.locator("#verdict")).to_contain_text(f"step “{step}” failed")
        if name == "entry":
            shoot(viewer, "proof-tampered")


def _variants(receipts: Receipts) -> list[tuple[str, str, str]]:
    """(name, receipt text, vkey): odd but valid spellings and tampered ones."""
    odd = receipts.odd_json
    tlog_lines = receipts.odd_tlog.split("\n")
    head_end = tlog_lines.index("")
    extra = tlog_lines[1]
    name, key_id, key = receipts.vkey.split("+", 2)
    broken_key = f"{name}+{'0' * 8 if key_id != '0' * 8 else '1' * 8}+{key}"
    for spelling in ('"neg":0', '"f":1.5', '"big":1e+21'):
        assert spelling in odd
    assert '\\n","log_vkey"' in odd
    truncated_note = odd.replace('\\n","log_vkey"', '","log_vkey"')  # the note's last newline
    note = json.loads(odd)["checkpoint"]
    signature_line = note.rstrip("\n").rpartition("\n")[2]
    signed_twice = edited(odd, lambda r: r.update(checkpoint=note + signature_line + "\n"))
    foreign = signature_line.replace(name, "another.log", 1)
    foreign_only = edited(odd, lambda r: r.update(checkpoint=note.replace(signature_line, foreign)))
    return [
        ("as served", odd, receipts.vkey),
        ("tlog as served", receipts.odd_tlog, receipts.vkey),
        ("negative zero", odd.replace('"neg":0', '"neg":-0.0'), receipts.vkey),
        ("float spellings", odd.replace('"f":1.5', '"f":15e-1'), receipts.vkey),
        ("1e21 as digits", odd.replace('"big":1e+21', '"big":1000000000000000000000'),
         receipts.vkey),
        ("escaped unicode", odd.replace("ü", "\\u00fc").replace("😀", "\\ud83d\\ude00"),
         receipts.vkey),
        ("pretty printed", json.dumps(json.loads(odd), indent=2, ensure_ascii=False),
         receipts.vkey),
        ("non-double integer", odd.replace('"neg":0', '"neg":12345678901234567891'),
         receipts.vkey),
        ("infinite float", odd.replace('"neg":0', '"neg":1e400'), receipts.vkey),
        ("integer beyond doubles", odd.replace('"neg":0', '"neg":1' + "0" * 400), receipts.vkey),
        ("lone surrogate", odd.replace("ü", "\\ud800"), receipts.vkey),
        ("duplicate member", odd.replace('"neg":0', '"neg":0,"neg":0'), receipts.vkey),
        ("changed float", odd.replace('"f":1.5', '"f":1.25'), receipts.vkey),
        ("index as float", re.sub(r'"leaf_index":(\d+)', r'"leaf_index":\1.0', odd),
         receipts.vkey),
        ("unknown field", odd[:-1] + ',"note":1}', receipts.vkey),
        ("not json", odd[:-1], receipts.vkey),
        ("corrupted vkey", odd, broken_key),
        ("truncated note", truncated_note, receipts.vkey),
        ("signed twice", signed_twice, receipts.vkey),
        ("signed by another key only", foreign_only, receipts.vkey),
        ("tlog without proof line", "\n".join(tlog_lines[: head_end - 1] + tlog_lines[head_end:]),
         receipts.vkey),
        ("tlog without extra", "\n".join(tlog_lines[:1] + tlog_lines[2:]), receipts.vkey),
        ("tlog non-canonical extra",
         receipts.odd_tlog.replace(extra, "extra " + _b64(b" " + base64.b64decode(extra[6:]))),
         receipts.vkey),
        ("tlog without final newline", receipts.odd_tlog.rstrip("\n"), receipts.vkey),
        ("tlog index moved", re.sub(r"\nindex (\d+)\n", "\nindex 0\n", receipts.odd_tlog),
         receipts.vkey),
    ]  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_the_browser_verdict_equals_the_python_reference(viewer: Page, receipts: Receipts) -> None:
    seen = set()
    for name, receipt, vkey in _variants(receipts):
        expected = python_verdict(receipt, vkey)
        seen.add(expected)
        assert verify_in_page(viewer, receipt, vkey) == expected, name
    origin = json.loads(receipts.odd_json)["checkpoint"].split("\n")[0]
    for wanted in (origin, "another.log"):
        expected = python_verdict(receipts.odd_json, receipts.vkey, origin=wanted)
        seen.add(expected)
        assert verify_in_page(viewer, receipts.odd_json, receipts.vkey, wanted) == expected
    steps = {step for _, step in seen}
    assert {
        "", "format", "vkey", "checkpoint-format", "signature", "canonical", "inclusion", "origin"
    } <= steps, seen  # fmt: skip


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind in (2, 3):
        while True:  # any finite double, from its bits
            value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if value == value and abs(value) != float("inf"):
                return value
    if kind == 4:
        return rng.choice([0.1, 1e21, 1e-7, 123e-20, 5e-324, 1.7976931348623157e308, -0.0, 2.5])
    if kind == 5:
        alphabet = 'aZ09 "\\/\b\f\n\r\t\x00\x1f\x7fü€\u2028\ud7ff\ue000😀𝄞'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "b", "é", "€", "😀", "\ufb33", "A", "aa", "", "1", "10", "__proto__"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_rfc8785_in_the_browser_matches_the_python_canonicalizer(viewer: Page) -> None:
    rng = random.Random(8785)
    texts = [json.dumps(_random_value(rng), ensure_ascii=rng.random() < 0.5) for _ in range(400)]
    texts += ["1e400", '{"a":1,"a":2}', '"\\udc00x"', "12345678901234567891", "-0", "[1E2]"]
    results = viewer.evaluate(
        """texts => texts.map(t => {
            const F = window.ClearanceFormats;
            try { return F.canonicalText(F.parseJSON(t)); } catch (e) { return null; }
        })""",
        texts,
    )
    for text, got in zip(texts, results, strict=True):
        try:
            expected: str | None = canonical_json(
                strict_json.loads(text, parse_int=_json_int)
            ).decode("utf-8")
        except (InputError, ValueError):
            expected = None
        assert got == expected, text


# --- consistency, the saved copy, browsers without Ed25519 ----------------------------------


def test_consistency_with_a_later_checkpoint_asks_only_the_log(
    viewer: Page, console: Served, receipts: Receipts
) -> None:
    assert verify_in_page(viewer, receipts.allowed_json, receipts.vkey) == ("ok", "")
    receipt_size = json.loads(receipts.allowed_json)["tree_size"]
    with console.client("agent") as agent, console.client("auditor") as auditor:
        for n in range(3):
            latest = _decide(agent, f'{{"action":"read_file","args":{{"path":"late/{n}"}}}}')
        _receipt(auditor, latest, "json")  # a checkpoint now covers the new entries
    log_url = viewer.get_by_label("Log URL")
    expect(log_url).to_have_value(console.url)
    result = viewer.locator("#consistency-verdict")
    log_url.fill("http://127.0.0.1:9")  # another origin: the console's CSP forbids it
    viewer.get_by_role("button", name="Check consistency").click()
    expect(result).to_have_attribute("data-step", "fetch")
    expect(result).to_contain_text("Content-Security-Policy")
    log_url.fill(console.url)
    requests = watch_requests(viewer)
    viewer.get_by_role("button", name="Check consistency").click()
    expect(result).to_have_attribute("data-verdict", "ok")
    shown = statuses(viewer, "consistency-steps")
    assert set(shown.values()) == {"pass"}, shown
    latest_size = int(httpx.get(f"{console.url}/v1/log/checkpoint").text.split("\n")[1])
    assert latest_size > receipt_size
    expect(result).to_contain_text(f"extends the receipt's ({receipt_size} entries)")
    paths = [httpx.URL(url).path for url in requests]
    assert paths == ["/v1/log/checkpoint", "/v1/log/proofs/consistency"], requests
    assert f"first={receipt_size}&second=" in requests[1]


def test_the_page_saved_to_disk_verifies_from_a_file(
    page: Page, console: Served, receipts: Receipts, tmp_path: Path
) -> None:
    html = httpx.get(f"{console.url}/console/proof").text
    saved = tmp_path / "proof.html"
    saved.write_text(html, encoding="utf-8")
    (tmp_path / "static").mkdir()
    for name in (
        "console.css",
        "proof.css",
        "proof_formats.js",
        "proof_crypto.js",
        "proof_verify.js",
        "proof.js",
    ):
        shutil.copy(HERE / "static" / name, tmp_path / "static" / name)
    page.goto(saved.as_uri())
    expect(page.locator("#support")).not_to_contain_text("Checking")
    page.get_by_label("Receipt: JSON or C2SP tlog-proof text").fill(receipts.allowed_tlog)
    page.get_by_role("button", name="Use this server's key").click()  # saved in the page
    expect(page.get_by_label("The log's verifier key (vkey)")).to_have_value(receipts.vkey)
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "ok")
    expect(page.get_by_label("Log URL")).to_have_value("")
    page.get_by_role("button", name="Check consistency").click()
    expect(page.locator("#consistency-verdict")).to_contain_text("opened from a file")


def test_without_webcrypto_ed25519_the_page_claims_nothing(
    page: Page, console: Served, receipts: Receipts
) -> None:
    page.add_init_script(
        """(() => {
          const original = crypto.subtle.importKey.bind(crypto.subtle);
          crypto.subtle.importKey = (format, key, algorithm, ...rest) =>
            algorithm && algorithm.name === "Ed25519"
              ? Promise.reject(new DOMException("Unrecognized name", "NotSupportedError"))
              : original(format, key, algorithm, ...rest);
        })();"""
    )
    page.goto(f"{console.url}/console/proof")
    expect(page.locator("#support")).to_contain_text("has no Ed25519")
    assert verify_in_page(page, receipts.allowed_json, receipts.vkey) == ("unsupported", "")
    expect(page.locator("#verdict")).to_contain_text("No result")
    expect(page.locator("#verdict")).not_to_contain_text("Verified")
    assert "pass" not in statuses(page).get("root", "")


# --- the page itself --------------------------------------------------------------------------


def test_the_page_is_public_and_strict(console: Served) -> None:
    response = httpx.get(f"{console.url}/console/proof")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    body = response.text
    for inline in ("<script>", " style=", " onclick=", " onsubmit="):
        assert inline not in body
    assert 'method="post"' not in body.split("</header>")[1]  # nothing here changes state
    vkey = httpx.get(f"{console.url}/v1/log/vkey").text.strip()
    assert vkey in body  # offered as the server's own claim


def test_it_reads_at_phone_width(viewer: Page, receipts: Receipts) -> None:
    viewer.set_viewport_size({"width": 375, "height": 800})
    assert verify_in_page(viewer, receipts.odd_json, receipts.vkey) == ("ok", "")
    width = viewer.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    levels = viewer.evaluate(
        "Array.from(document.querySelectorAll('main h1, main h2, main h3'), h => +h.tagName[1])"
    )
    assert levels[0] == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
