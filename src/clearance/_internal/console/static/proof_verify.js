// clearance proof viewer: verifying a receipt step by step (receipts.py, in the browser).
//
// verifyReceipt(text, vkey, {origin}) returns a report: the planned steps, each "pass",
// "fail", "unsupported" or "notreached", and the verdict. The steps run in the order of
// the Python reference (src/clearance/_internal/ledger/receipts.py), so the first
// failing step, named by its ProofError step, is the one `clearance verify` names:
// format, vkey, [format: a tlog-proof without an entry], checkpoint-format/signature,
// checkpoint-format, origin, tree-size, inclusion (leaf index), canonical, inclusion.
//
// Invariants:
// * Only the verifier key typed in by the user is trusted. A receipt's own `log_vkey` is
//   compared with it, never used.
// * The tree size comes from the signed checkpoint, never from the receipt: an
//   inclusion proof alone does not bind a size.
// * No step asks the network; checkConsistency (separate, on request) fetches only the
//   log's public /v1/log/checkpoint and /v1/log/proofs/consistency.
"use strict";
(function () {
  const F = window.ClearanceFormats;
  const C = window.ClearanceCrypto;
  const fail = C.fail;

  const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";
  const RECEIPT_FIELDS = ["checkpoint", "entry", "inclusion_proof", "leaf_index", "log_vkey", "tree_size"];
  const MAX_RECEIPT_SIZE = 16 << 20;
  const MAX_PROOF_HASHES = 64;
  const INDEX_LINE = /^index (0|[1-9][0-9]{0,19})$/;
  const MAX_INDEX = (1n << 64n) - 1n;

  const PLAN = [
    ["parse", "format", "Read the receipt"],
    ["vkey", "vkey", "Verifier key: name and key ID"],
    ["entry-present", "format", "Entry carried by the proof"],
    ["signature", "signature", "Checkpoint signature (Ed25519, C2SP signed note)"],
    ["checkpoint", "checkpoint-format", "Checkpoint: origin, tree size, root"],
    ["origin", "origin", "Expected log origin"],
    ["tree-size", "tree-size", "Tree size from the signed checkpoint"],
    ["leaf-index", "inclusion", "Leaf index inside the signed tree"],
    ["canonical", "canonical", "Canonical entry (RFC 8785)"],
    ["leaf-hash", "inclusion", "Leaf hash SHA-256(0x00 || entry)"],
    ["path", "inclusion", "Audit path up to the root (RFC 9162 §2.1.3.2)"],
    ["root", "inclusion", "Computed root equals the signed root"],
  ];

  class Stop extends Error {}

  /** A report of planned steps; `run` executes one and stops the rest on failure. */
  class Report {
    constructor(plan) {
      this.rows = plan.map(function (item) {
        return { id: item[0], step: item[1], title: item[2], status: "notreached", summary: "", facts: [], path: null, text: null };
      });
      this.ok = null;
      this.failure = null;
      this.unsupported = null;
      this.result = null;
    }
    row(id) {
      return this.rows.find(function (r) { return r.id === id; });
    }
    async run(id, work) {
      const row = this.row(id);
      try {
        const out = await work(row);
        row.status = "pass";
        return out;
      } catch (error) {
        row.status = "fail";
        if (error instanceof C.StepFailure) {
          row.step = error.step;
          row.summary = error.message;
        } else {
          row.summary = "unexpected error: " + (error && error.message ? error.message : String(error));
        }
        this.ok = false;
        this.failure = { row: id, step: row.step, message: row.summary };
        throw new Stop();
      }
    }
  }

  function fact(row, label, value, mono) {
    row.facts.push({ label: label, value: String(value), mono: Boolean(mono) });
  }

  function decodeHash(value, position, what) {
    if (typeof value !== "string") fail("format", what + "[" + position + "] must be a base64 string");
    let raw;
    try {
      raw = F.b64decodeStrict(value);
    } catch (error) {
      fail("format", what + "[" + position + "]: " + error.message);
    }
    if (raw.length !== 32) fail("format", what + "[" + position + "] is " + raw.length + " bytes, expected 32");
    return raw;
  }

  function integerField(receipt, name) {
    const value = receipt[name];
    if (!(value instanceof F.JsonNumber) || !value.integer || value.value < 0) {
      const shown = value instanceof F.JsonNumber ? String(value.value) : JSON.stringify(value);
      fail("format", name + " must be a non-negative integer, got " + String(shown).slice(0, 40));
    }
    return BigInt(value.value);
  }

  /** The fields of a JSON receipt (receipts._load_receipt and the hash decoding). */
  function readJsonReceipt(text) {
    let receipt;
    try {
      receipt = F.parseJSON(text);
    } catch (error) {
      fail("format", "the receipt is not valid JSON: " + error.message);
    }
    if (!F.isObject(receipt)) fail("format", "a receipt must be a JSON object");
    const names = Object.keys(receipt);
    const missing = RECEIPT_FIELDS.filter(function (f) { return !names.includes(f); });
    const extra = names.filter(function (f) { return !RECEIPT_FIELDS.includes(f); }).sort();
    if (missing.length) fail("format", "the receipt lacks the field(s) " + missing.join(", "));
    if (extra.length) fail("format", "the receipt has unknown field(s) " + extra.join(", "));
    const leafIndex = integerField(receipt, "leaf_index");
    const treeSize = integerField(receipt, "tree_size");
    for (const name of ["checkpoint", "log_vkey"]) {
      if (typeof receipt[name] !== "string") fail("format", name + " must be a string");
    }
    const proof = receipt.inclusion_proof;
    if (!Array.isArray(proof)) fail("format", "inclusion_proof must be a list of base64 hashes");
    if (proof.length > MAX_PROOF_HASHES) fail("format", "inclusion_proof has more than " + MAX_PROOF_HASHES + " hashes");
    if (!F.isObject(receipt.entry)) fail("format", "the entry must be a JSON object");
    return {
      kind: "json", entry: receipt.entry, extra: null, leafIndex: leafIndex, treeSize: treeSize,
      proof: proof.map(function (h, i) { return decodeHash(h, i, "inclusion_proof"); }),
      note: receipt.checkpoint, logVkey: receipt.log_vkey,
    };
  }

  /** The parts of C2SP tlog-proof@v1 text (receipts._parse_tlog_proof). */
  function readTlogProof(text) {
    const blank = text.indexOf("\n\n");
    const note = blank < 0 ? "" : text.slice(blank + 2);
    if (blank < 0 || !note) fail("format", "the tlog-proof has no empty line followed by a checkpoint");
    const lines = text.slice(0, blank).split("\n");
    if (lines[0] !== TLOG_PROOF_HEADER) fail("format", "the first line must be " + JSON.stringify(TLOG_PROOF_HEADER));
    let position = 1;
    let extra = null;
    if (lines.length > 1 && lines[1].startsWith("extra")) {
      if (!lines[1].startsWith("extra ")) fail("format", "the extra line must be 'extra' followed by a space and base64");
      try {
        extra = F.b64decodeStrict(lines[1].slice("extra ".length));
      } catch (error) {
        fail("format", "the extra line: " + error.message);
      }
      if (!extra.length) fail("format", "the extra line is empty; omit it instead");
      position = 2;
    }
    const match = lines.length > position ? INDEX_LINE.exec(lines[position]) : null;
    if (match === null || BigInt(match[1]) > MAX_INDEX) fail("format", "expected an 'index N' line (decimal, no leading zeros)");
    const hashes = lines.slice(position + 1);
    if (hashes.length > MAX_PROOF_HASHES) fail("format", "the inclusion proof has more than " + MAX_PROOF_HASHES + " hashes");
    return {
      kind: "tlog-proof", entry: null, extra: extra, leafIndex: BigInt(match[1]), treeSize: null,
      proof: hashes.map(function (h, i) { return decodeHash(h, i, "inclusion_proof"); }),
      note: note, logVkey: null,
    };
  }

  function isTlogProof(text) {
    return typeof text === "string" && text.startsWith("c2sp.org/");
  }

  function readReceipt(text) {
    if (typeof text !== "string" || !text.trim()) fail("format", "paste or upload a receipt first");
    if (text.length > MAX_RECEIPT_SIZE && F.codePoints(text) > MAX_RECEIPT_SIZE) {
      fail("format", "the receipt is longer than " + MAX_RECEIPT_SIZE + " characters");
    }
    if (isTlogProof(text)) return readTlogProof(text);
    if (text.trimStart().startsWith("{")) return readJsonReceipt(text);
    return fail("format", "this is neither a JSON receipt (an object) nor a C2SP tlog-proof (its first line is " + TLOG_PROOF_HEADER + ")");
  }

  /** The leaf bytes of a tlog-proof's entry, which must be canonical JSON of an object
   *  (receipts._leaf_entry); returns {leaf, text}. */
  function canonicalFromExtra(bytes) {
    const refuse = function () { fail("canonical", "the entry bytes are not the RFC 8785 canonical JSON of an object"); };
    let value;
    try {
      value = F.parseJSON(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes));
    } catch (error) {
      refuse();
    }
    if (!F.isObject(value)) refuse();
    let again;
    try {
      again = F.canonicalBytes(value);
    } catch (error) {
      refuse();
    }
    if (!F.equalBytes(again, bytes)) refuse();
    return { leaf: bytes, value: value };
  }

  function canonicalFromEntry(entry) {
    try {
      return { leaf: F.canonicalBytes(entry), value: entry };
    } catch (error) {
      return fail("canonical", "the entry has no RFC 8785 canonical form, so no leaf hash: " + error.message);
    }
  }

  function describeEntry(row, value) {
    const pick = function (name) {
      const v = value[name];
      return typeof v === "string" ? v : null;
    };
    if (pick("type")) fact(row, "entry type", pick("type"));
    if (pick("request_id")) fact(row, "request", pick("request_id"), true);
    const intent = F.isObject(value.intent) ? value.intent : null;
    if (intent && typeof intent.action === "string") fact(row, "action", intent.action);
    if (pick("effect")) fact(row, "effect", pick("effect"));
    if (pick("status")) fact(row, "status", pick("status"));
    if (pick("at")) fact(row, "logged at", pick("at"));
  }

  /** Verify receipt text (JSON or tlog-proof) against the trusted vkey text. */
  async function verifyReceipt(text, vkeyText, options) {
    const expectedOrigin = options && options.origin ? options.origin : null;
    const support = options && options.support ? options.support : await C.ed25519Support();
    let parsed = null;
    let plan = PLAN.filter(function (item) { return item[0] !== "origin" || expectedOrigin; });
    if (!isTlogProof(text)) plan = plan.filter(function (item) { return item[0] !== "entry-present"; });
    const report = new Report(plan);
    const vkey = (vkeyText || "").trim();
    try {
      parsed = await report.run("parse", function (row) {
        const got = readReceipt(text);
        fact(row, "format", got.kind === "json" ? "receipt JSON (DESIGN §5)" : "C2SP tlog-proof@v1");
        fact(row, "leaf index", got.leafIndex);
        if (got.treeSize !== null) fact(row, "tree size the receipt claims", got.treeSize);
        fact(row, "audit path hashes", got.proof.length);
        row.summary = "Parsed the " + (got.kind === "json" ? "JSON receipt" : "tlog-proof") + "; nothing is trusted yet.";
        return got;
      });
      if (!support.ok) {
        const row = report.row("vkey");
        row.status = "unsupported";
        row.summary = support.reason;
        report.unsupported = support.reason;
        throw new Stop();
      }
      const verifier = await report.run("vkey", async function (row) {
        if (!vkey) fail("vkey", "paste the log's verifier key (vkey) first");
        const key = await C.parseVkey(vkey);
        fact(row, "key name", key.name, true);
        fact(row, "key ID (SHA-256(name || 0x0A || 0x01 || key)[:4])", F.hex(key.keyId), true);
        fact(row, "Ed25519 public key", F.b64encode(key.publicKey), true);
        if (parsed.logVkey !== null) {
          if (parsed.logVkey !== vkey) {
            fail("vkey", "the receipt was issued under log key " + JSON.stringify(parsed.logVkey).slice(0, 120) + ", not the trusted " + JSON.stringify(vkey) + ": verify it with that log's key if you trust it");
          }
          fact(row, "receipt's log_vkey", "the trusted key (a label, never used to verify)");
        }
        row.summary = "The key ID matches the key's name and bytes.";
        return key;
      });
      if (parsed.kind === "tlog-proof") {
        await report.run("entry-present", function (row) {
          if (parsed.extra === null) fail("format", "the tlog-proof carries no entry (no extra line): this viewer checks the entry it carries");
          row.summary = "The extra line carries " + parsed.extra.length + " bytes; the inclusion proof below decides whether the log holds them.";
        });
      }
      let opened = null;
      await report.run("signature", async function (row) {
        opened = await C.openNote(parsed.note, verifier);
        fact(row, "signature lines", opened.signatures.map(function (s) { return s.name + " " + F.hex(s.keyId); }).join("; "), true);
        fact(row, "signed by", verifier.name + " key ID " + F.hex(opened.used.keyId), true);
        row.summary = "The signature line with the trusted key's name and key ID verifies over the " + opened.signedBytes + " bytes of the checkpoint text.";
      });
      const checkpoint = await report.run("checkpoint", function (row) {
        const body = C.checkpointBody(opened.text, null);
        fact(row, "origin", body.origin, true);
        fact(row, "tree size", body.size);
        fact(row, "root hash", F.b64encode(body.root), true);
        if (body.extensions) fact(row, "extension lines", body.extensions + " (ignored)");
        row.summary = "Signed: log " + body.origin + " had " + body.size + " entries with this root.";
        return body;
      });
      if (expectedOrigin) {
        await report.run("origin", function (row) {
          C.checkpointBody(opened.text, expectedOrigin);
          row.summary = "The checkpoint is for the log " + expectedOrigin + ".";
        });
      }
      await report.run("tree-size", function (row) {
        if (parsed.treeSize !== null && parsed.treeSize !== checkpoint.size) {
          fail("tree-size", "the receipt claims tree_size " + parsed.treeSize + " but its signed checkpoint is for size " + checkpoint.size + ": the receipt was altered");
        }
        row.summary = parsed.treeSize === null
          ? "A tlog-proof carries no size: the signed checkpoint's " + checkpoint.size + " is used."
          : "The receipt's tree_size equals the signed size " + checkpoint.size + "; the proof is checked against the signed size only.";
      });
      await report.run("leaf-index", function (row) {
        if (parsed.leafIndex >= checkpoint.size) {
          fail("inclusion", "leaf_index " + parsed.leafIndex + " is outside the signed tree of size " + checkpoint.size);
        }
        row.summary = "Leaf " + parsed.leafIndex + " of " + checkpoint.size + ".";
      });
      const canonical = await report.run("canonical", function (row) {
        const got = parsed.extra !== null ? canonicalFromExtra(parsed.extra) : canonicalFromEntry(parsed.entry);
        describeEntry(row, got.value);
        fact(row, "canonical bytes", got.leaf.length);
        row.text = new TextDecoder().decode(got.leaf);
        row.summary = parsed.extra !== null
          ? "The extra line holds the canonical JSON of an object (not yet proven)."
          : "The entry serialized as RFC 8785 canonical JSON: these bytes are the leaf.";
        return got;
      });
      const leaf = await report.run("leaf-hash", async function (row) {
        const hash = await C.leafHash(canonical.leaf);
        fact(row, "leaf hash", F.b64encode(hash), true);
        row.summary = "SHA-256 over 0x00 followed by the " + canonical.leaf.length + " entry bytes.";
        return hash;
      });
      const steps = [];
      const computed = await report.run("path", async function (row) {
        row.path = steps;
        const root = await C.rootFromInclusionProof(parsed.leafIndex, checkpoint.size, leaf, parsed.proof, steps);
        row.summary = steps.length + " step(s) from leaf " + parsed.leafIndex + " to the root of a tree of " + checkpoint.size + ".";
        return root;
      });
      await report.run("root", function (row) {
        fact(row, "computed root", F.b64encode(computed), true);
        fact(row, "signed root", F.b64encode(checkpoint.root), true);
        if (!F.equalBytes(computed, checkpoint.root)) {
          fail("inclusion", "inclusion proof does not lead to the root hash: the entry, its index or the proof hashes differ from what the log signed");
        }
        row.summary = "The entry is leaf " + parsed.leafIndex + " of the signed tree.";
      });
      report.ok = true;
      report.result = {
        entry: canonical.value, leafIndex: parsed.leafIndex, treeSize: checkpoint.size,
        root: checkpoint.root, origin: checkpoint.origin, verifier: verifier,
      };
    } catch (error) {
      if (!(error instanceof Stop)) throw error;
    }
    return report;
  }

  // --- consistency with the log's latest checkpoint (on request only) -------------------

  const MAX_FETCHED = 2 << 20;
  const MAX_CONSISTENCY_HASHES = 128;

  const CONSISTENCY_PLAN = [
    ["fetch-checkpoint", "fetch", "Fetch the log's latest checkpoint"],
    ["latest-signature", "signature", "Latest checkpoint signature (same verifier key)"],
    ["latest-checkpoint", "checkpoint-format", "Latest checkpoint: origin, tree size, root"],
    ["same-log", "origin", "Same log as the receipt"],
    ["growth", "consistency", "The log did not shrink"],
    ["fetch-proof", "fetch", "Fetch the consistency proof"],
    ["consistency", "consistency", "Consistency proof (RFC 9162 §2.1.4.2)"],
  ];

  function unreachableHint(url) {
    if (window.location.protocol === "file:") {
      return "A page opened from a file may only read a log that allows cross-origin requests, which clearance serve does not: open " + url.origin + "/console/proof and check there.";
    }
    if (url.origin !== window.location.origin) {
      return "The console's Content-Security-Policy lets this page reach only its own server (" + window.location.origin + ").";
    }
    return "Is the log running and reachable?";
  }

  /** GET `path` under the log's base URL as text; StepFailure("fetch") otherwise. */
  async function fetchText(base, path) {
    let url;
    try {
      url = new URL(path, base.endsWith("/") ? base : base + "/");
    } catch (error) {
      fail("fetch", JSON.stringify(base) + " is not a URL: enter the log's address, e.g. http://127.0.0.1:8470");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") fail("fetch", "the log's URL must start with http:// or https://");
    let response;
    try {
      response = await fetch(url.href, { credentials: "omit", cache: "no-store", redirect: "error" });
    } catch (error) {
      fail("fetch", "could not read " + url.href + " (" + error.message + "). " + unreachableHint(url));
    }
    const body = await response.text();
    if (!response.ok) {
      const reason = response.status === 404 && path.endsWith("checkpoint") ? "the log has no signed checkpoint yet" : body.slice(0, 200);
      fail("fetch", url.href + " answered " + response.status + ": " + reason);
    }
    if (body.length > MAX_FETCHED) fail("fetch", url.href + " answered more than " + MAX_FETCHED + " characters");
    return { url: url.href, body: body };
  }

  function readConsistencyProof(text, first, second) {
    let data;
    try {
      data = F.parseJSON(text);
    } catch (error) {
      fail("consistency", "the consistency proof is not valid JSON: " + error.message);
    }
    if (!F.isObject(data) || !Array.isArray(data.proof)) fail("consistency", "the answer is not a consistency proof ({first, second, proof, ...})");
    for (const [name, expected] of [["first", first], ["second", second]]) {
      const value = data[name];
      if (!(value instanceof F.JsonNumber) || !value.integer || BigInt(value.value) !== expected) {
        fail("consistency", "the log answered a proof for another " + name + " size than " + expected);
      }
    }
    if (data.proof.length > MAX_CONSISTENCY_HASHES) fail("consistency", "the consistency proof has more than " + MAX_CONSISTENCY_HASHES + " hashes");
    try {
      return data.proof.map(function (h, i) { return decodeHash(h, i, "proof"); });
    } catch (error) {
      return fail("consistency", error.message);
    }
  }

  /** Check that the log at `base` still extends the receipt's verified checkpoint
   *  (`result` of verifyReceipt): its latest checkpoint, signed by the same key, is for
   *  the same origin, no smaller, and proven consistent. */
  async function checkConsistency(base, result) {
    const report = new Report(CONSISTENCY_PLAN);
    try {
      const fetched = await report.run("fetch-checkpoint", async function (row) {
        const got = await fetchText(base, "v1/log/checkpoint");
        fact(row, "from", got.url, true);
        row.summary = "Read " + got.body.length + " characters; nothing is trusted yet.";
        return got.body;
      });
      let opened = null;
      await report.run("latest-signature", async function (row) {
        opened = await C.openNote(fetched, result.verifier);
        row.summary = "Signed by the trusted key " + result.verifier.name + " (key ID " + F.hex(result.verifier.keyId) + ").";
      });
      const latest = await report.run("latest-checkpoint", function (row) {
        const body = C.checkpointBody(opened.text, null);
        fact(row, "origin", body.origin, true);
        fact(row, "tree size", body.size);
        fact(row, "root hash", F.b64encode(body.root), true);
        row.summary = "The log now has " + body.size + " entries.";
        return body;
      });
      await report.run("same-log", function (row) {
        if (latest.origin !== result.origin) {
          fail("origin", "the latest checkpoint is for log " + JSON.stringify(latest.origin) + ", the receipt's for " + JSON.stringify(result.origin));
        }
        row.summary = "Both checkpoints are for " + result.origin + ".";
      });
      await report.run("growth", function (row) {
        if (latest.size < result.treeSize) {
          fail("consistency", "the log's latest checkpoint has " + latest.size + " entries, fewer than the " + result.treeSize + " the receipt's checkpoint signed: the log went backwards");
        }
        row.summary = "From " + result.treeSize + " to " + latest.size + " entries.";
      });
      const proof = await report.run("fetch-proof", async function (row) {
        if (latest.size === result.treeSize) {
          row.summary = "Not needed: both checkpoints are for the same size, so their roots must be equal.";
          return [];
        }
        const got = await fetchText(base, "v1/log/proofs/consistency?first=" + result.treeSize + "&second=" + latest.size);
        fact(row, "from", got.url, true);
        const hashes = readConsistencyProof(got.body, result.treeSize, latest.size);
        row.summary = hashes.length + " hash(es); the roots come from the two signed checkpoints, not from this answer.";
        row.path = hashes.map(function (h) { return { sibling: h, side: null, result: null }; });
        return hashes;
      });
      await report.run("consistency", async function (row) {
        const roots = await C.verifyConsistency(result.treeSize, latest.size, result.root, latest.root, proof);
        fact(row, "rebuilt root at size " + result.treeSize, F.b64encode(roots.first), true);
        fact(row, "rebuilt root at size " + latest.size, F.b64encode(roots.second), true);
        row.summary = "The log at size " + latest.size + " extends the tree the receipt was proven in: nothing it signed was rewritten.";
      });
      report.ok = true;
      report.result = { latest: latest };
    } catch (error) {
      if (!(error instanceof Stop)) throw error;
    }
    return report;
  }

  window.ClearanceVerify = { verifyReceipt: verifyReceipt, checkConsistency: checkConsistency, Report: Report, Stop: Stop, fact: fact, decodeHash: decodeHash };
})();
