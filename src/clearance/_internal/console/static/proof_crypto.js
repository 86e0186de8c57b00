// clearance proof viewer: WebCrypto, C2SP signed notes and RFC 9162 Merkle proofs.
//
// Ports of src/clearance/_internal/ledger/checkpoint.py and merkle.py; every failure
// is a StepFailure whose `step` is the Python ProofError step ("vkey",
// "checkpoint-format", "signature", "origin", "inclusion", "consistency").
//
// Invariants:
// * Only WebCrypto computes: SHA-256 with subtle.digest, Ed25519 with subtle.importKey
//   ("raw", {name: "Ed25519"}) and subtle.verify. Nothing here touches the network.
// * openNote returns a note's text only when a signature line whose key name AND key ID
//   are the trusted key's verifies (C2SP signed-note); other signatures are ignored, a
//   failing or repeated trusted signature rejects the note.
// * Tree sizes and indexes are BigInt: a checkpoint may name any size below 2**64.
"use strict";
(function () {
  const F = window.ClearanceFormats;
  const encoder = new TextEncoder();

  class StepFailure extends Error {
    constructor(step, message) {
      super(message);
      this.step = step;
    }
  }

  function fail(step, message) {
    throw new StepFailure(step, message);
  }

  // --- WebCrypto -----------------------------------------------------------------------

  // RFC 8032 §7.1 TEST 1: the empty message signed by this key.
  const PROBE_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
  const PROBE_SIGNATURE =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

  /** Whether this browser verifies Ed25519 with WebCrypto: {ok, reason}. */
  async function ed25519Support() {
    const subtle = window.crypto && window.crypto.subtle;
    if (!subtle) {
      return { ok: false, reason: "This browser offers no WebCrypto here: the page is not in a secure context. Open it over HTTPS, from localhost, or save it and open the file." };
    }
    try {
      const key = await importEd25519(F.fromHex(PROBE_KEY));
      const good = await subtle.verify({ name: "Ed25519" }, key, F.fromHex(PROBE_SIGNATURE), new Uint8Array(0));
      const bad = F.fromHex(PROBE_SIGNATURE);
      bad[0] ^= 1;
      const wrong = await subtle.verify({ name: "Ed25519" }, key, bad, new Uint8Array(0));
      if (good && !wrong) return { ok: true, reason: "" };
      return { ok: false, reason: "This browser's WebCrypto Ed25519 fails the RFC 8032 test vector, so its answers cannot be trusted." };
    } catch (error) {
      return { ok: false, reason: "This browser's WebCrypto has no Ed25519 (" + (error && error.name ? error.name : error) + "), so it cannot check the log's signature. Use a current browser, or verify with `clearance verify RECEIPT --vkey VKEY`." };
    }
  }

  function importEd25519(raw) {
    return window.crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await window.crypto.subtle.digest("SHA-256", bytes));
  }

  // --- C2SP signed notes (checkpoint.py) -------------------------------------------------

  const MAX_NOTE_SIZE = 1 << 20;
  const MAX_SIGNATURES = 100;
  const MAX_TREE_SIZE = (1n << 64n) - 1n;
  const SIG_PREFIX = "\u2014 ";
  const CONTROL = /[\u0000-\u0009\u000b-\u001f]/;
  const HEX_KEY_ID = /^[0-9a-f]{8}$/;
  const DECIMAL = /^(?:0|[1-9][0-9]{0,19})$/;
  // Python's str.isspace() characters, the control characters, and '+'.
  const NOT_IN_KEY_NAME = /[\u0000-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000+]/;

  function validKeyName(name) {
    return typeof name === "string" && name !== "" && !NOT_IN_KEY_NAME.test(name);
  }

  /** SHA-256(name || 0x0A || 0x01 || public key)[:4], the Ed25519 key ID. */
  async function keyId(name, publicKey) {
    const digest = await sha256(F.concat(encoder.encode(name), Uint8Array.of(0x0a, 0x01), publicKey));
    return digest.slice(0, 4);
  }

  /** Parse `<name>+<hex key ID>+<base64(0x01 || key)>` (NoteVerifier.from_vkey). */
  async function parseVkey(vkey) {
    const first = vkey.indexOf("+");
    const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
    if (second < 0) fail("vkey", "verifier key must look like <name>+<8 hex digits>+<base64 key>");
    const name = vkey.slice(0, first);
    const hexId = vkey.slice(first + 1, second);
    if (!validKeyName(name)) fail("vkey", "verifier key has an invalid key name " + JSON.stringify(name));
    if (!HEX_KEY_ID.test(hexId)) fail("vkey", "verifier key ID " + JSON.stringify(hexId) + " must be 8 lowercase hex digits");
    let raw;
    try {
      raw = F.b64decodeStrict(vkey.slice(second + 1));
    } catch (error) {
      fail("vkey", "verifier key material is not valid base64: " + error.message);
    }
    if (raw.length !== 33 || raw[0] !== 0x01) {
      fail("vkey", "verifier key is not an Ed25519 key (expected 0x01 followed by 32 bytes)");
    }
    const publicKey = raw.slice(1);
    const computed = await keyId(name, publicKey);
    if (F.hex(computed) !== hexId) {
      fail("vkey", "verifier key ID " + hexId + " does not match its name and key (computed " + F.hex(computed) + "): the key string is corrupted");
    }
    let cryptoKey;
    try {
      cryptoKey = await importEd25519(publicKey);
    } catch (error) {
      fail("vkey", "WebCrypto refuses the verifier key as an Ed25519 public key (" + error.name + ")");
    }
    return { vkey: vkey, name: name, keyId: computed, publicKey: publicKey, cryptoKey: cryptoKey };
  }

  function malformed(reason) {
    return new StepFailure("checkpoint-format", "signed note is malformed: " + reason);
  }

  /** Split a note into its text and signature lines ({name, keyId, signature}). */
  function splitNote(note) {
    if (typeof note !== "string") throw malformed("expected text");
    if (F.codePoints(note) > MAX_NOTE_SIZE) throw malformed("longer than " + MAX_NOTE_SIZE + " characters");
    if (CONTROL.test(note)) throw malformed("it contains control characters other than newline");
    if (!F.wellFormed(note)) throw malformed("it is not valid Unicode");
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw malformed("no blank line separates the text from the signatures");
    const text = note.slice(0, split + 1);
    const block = note.slice(split + 2);
    if (!block) throw malformed("it has no signature lines");
    if (!block.endsWith("\n")) throw malformed("the last signature line does not end with a newline");
    const lines = block.slice(0, -1).split("\n");
    if (lines.length > MAX_SIGNATURES) throw malformed("more than " + MAX_SIGNATURES + " signature lines");
    const signatures = lines.map(function (line, index) {
      const number = index + 1;
      if (!line.startsWith(SIG_PREFIX)) throw malformed("signature line " + number + " does not start with an em dash and a space");
      const rest = line.slice(SIG_PREFIX.length);
      const space = rest.indexOf(" ");
      const name = space < 0 ? rest : rest.slice(0, space);
      if (space < 0 || !validKeyName(name)) throw malformed("signature line " + number + " has no valid key name");
      let raw;
      try {
        raw = F.b64decodeStrict(rest.slice(space + 1));
      } catch (error) {
        throw malformed("signature line " + number + ": " + error.message);
      }
      if (raw.length < 5) throw malformed("signature line " + number + " is shorter than a key ID and a signature");
      return { name: name, keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text: text, signatures: signatures };
  }

  /** Verify `note` with the parsed verifier key; returns {text, signatures, used}. */
  async function openNote(note, verifier) {
    const parts = splitNote(note);
    const data = encoder.encode(parts.text);
    const trusted = verifier.name + "+" + F.hex(verifier.keyId);
    let used = null;
    for (const line of parts.signatures) {
      if (line.name !== verifier.name || !F.equalBytes(line.keyId, verifier.keyId)) continue;
      if (used !== null) throw malformed("the trusted key " + trusted + " signed it twice");
      const valid = line.signature.length === 64 &&
        await window.crypto.subtle.verify({ name: "Ed25519" }, verifier.cryptoKey, line.signature, data);
      if (!valid) {
        fail("signature", "the signature by the trusted key " + trusted + " does not verify: the note was altered after signing");
      }
      used = line;
    }
    if (used === null) {
      const names = Array.from(new Set(parts.signatures.map(function (s) { return s.name; }))).sort().join(", ");
      fail("signature", "the note has no signature by the trusted key " + trusted + " (signed by: " + names + "); check that you hold the right verifier key");
    }
    return { text: parts.text, signatures: parts.signatures, used: used, signedBytes: data.length };
  }

  function badCheckpoint(reason) {
    return new StepFailure("checkpoint-format", "checkpoint is malformed: " + reason);
  }

  /** The checkpoint body of a verified note text: {origin, size (BigInt), root, extensions}. */
  function checkpointBody(text, expectedOrigin) {
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw badCheckpoint("expected an origin, a tree size and a root hash line");
    const [origin, sizeLine, rootLine] = lines;
    const extensions = lines.slice(3);
    if (origin === "") throw badCheckpoint("the origin line is empty");
    if (!DECIMAL.test(sizeLine) || BigInt(sizeLine) > MAX_TREE_SIZE) {
      throw badCheckpoint("tree size " + JSON.stringify(sizeLine.slice(0, 40)) + " is not a decimal without leading zeros");
    }
    let root;
    try {
      root = F.b64decodeStrict(rootLine);
    } catch (error) {
      throw badCheckpoint("root hash: " + error.message);
    }
    if (root.length !== 32) throw badCheckpoint("root hash is " + root.length + " bytes, expected 32");
    if (extensions.some(function (line) { return line === ""; })) throw badCheckpoint("extension lines must not be empty");
    if (expectedOrigin && origin !== expectedOrigin) {
      fail("origin", "checkpoint is for log " + JSON.stringify(origin) + ", expected " + JSON.stringify(expectedOrigin));
    }
    return { origin: origin, size: BigInt(sizeLine), root: root, extensions: extensions.length };
  }

  // --- RFC 9162 §2.1 (merkle.py) ---------------------------------------------------------

  async function leafHash(leaf) {
    return sha256(F.concat(Uint8Array.of(0x00), leaf));
  }

  async function nodeHash(left, right) {
    return sha256(F.concat(Uint8Array.of(0x01), left, right));
  }

  /** RFC 9162 §2.1.3.2: the root from a leaf hash and its path, with every step
   *  ({sibling, side: where the sibling sits, result}) in `steps`. */
  async function rootFromInclusionProof(index, size, leaf, proof, steps) {
    if (!(index >= 0n && index < size)) fail("inclusion", "leaf index " + index + " is outside a tree of size " + size);
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0n) fail("inclusion", "inclusion proof is longer than the tree allows");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        steps.push({ sibling: p, side: "left", result: r });
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await nodeHash(r, p);
        steps.push({ sibling: p, side: "right", result: r });
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) fail("inclusion", "inclusion proof is shorter than the tree requires");
    return r;
  }

  /** RFC 9162 §2.1.4.2, as merkle.verify_consistency; returns the two computed roots. */
  async function verifyConsistency(size1, size2, root1, root2, proof) {
    const bad = function (message) { fail("consistency", message); };
    if (size1 < 0n || size2 < size1) bad("no consistency from size " + size1 + " to size " + size2);
    if (size1 === size2) {
      if (proof.length) bad("equal tree sizes need an empty proof");
      if (!F.equalBytes(root1, root2)) bad("equal tree sizes with different roots");
      if (size1 === 0n) bad("consistency with an empty tree proves nothing");
      return { first: root1, second: root2 };
    }
    if (size1 === 0n) bad("consistency with an empty tree proves nothing");
    if (!proof.length) bad("consistency proof is empty");
    const path = proof.slice();
    if ((size1 & (size1 - 1n)) === 0n) path.unshift(root1);
    let fn = size1 - 1n;
    let sn = size2 - 1n;
    while ((fn & 1n) === 1n) {
      fn >>= 1n;
      sn >>= 1n;
    }
    let fr = path[0];
    let sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) bad("consistency proof is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await nodeHash(c, fr);
        sr = await nodeHash(c, sr);
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) bad("consistency proof is too short");
    if (!F.equalBytes(fr, root1)) bad("consistency proof does not match the first root");
    if (!F.equalBytes(sr, root2)) bad("consistency proof does not match the second root");
    return { first: fr, second: sr };
  }

  window.ClearanceCrypto = {
    StepFailure: StepFailure, fail: fail, ed25519Support: ed25519Support, sha256: sha256,
    keyId: keyId, parseVkey: parseVkey, openNote: openNote, checkpointBody: checkpointBody,
    leafHash: leafHash, rootFromInclusionProof: rootFromInclusionProof,
    verifyConsistency: verifyConsistency, validKeyName: validKeyName,
  };
})();
