// clearance proof viewer: the formats a receipt is made of, read exactly as the Python
// reference reads them (src/clearance/_internal/ledger/, strict_json.py, canonical.py).
//
// Invariants:
// * parseJSON reads one JSON value the way clearance's strict_json does with the
//   receipt's parse_int: repeated member names, raw control characters in strings and
//   anything beyond RFC 8259 are refused; an integer literal within +-(2**53-1) is an
//   integer, a larger one becomes the double nearest it (refused when none is finite),
//   a literal with a fraction or exponent is a double (which may be infinite: RFC 8785
//   then refuses it, as Python's rfc8785 does).
// * canonicalBytes is RFC 8785 (JCS): members sorted by UTF-16 code units, numbers as
//   ECMAScript's Number.prototype.toString writes them (negative zero as 0), strings
//   with the minimal JCS escapes, UTF-8. It refuses what has no canonical form (NaN,
//   infinities, lone surrogates).
// * b64decodeStrict accepts only canonical padded base64 (RFC 4648 §4, zero pad bits),
//   so every accepted string has one spelling, as checkpoint.b64decode_strict.
// No function here reads the network, the DOM or a clock.
"use strict";
(function () {
  const SAFE_INT = 2 ** 53 - 1;
  const MAX_INT_DIGITS = 4300; // Python refuses int() of longer decimal strings
  const MAX_DEPTH = 900; // below Python's recursion limit, which refuses deeper JSON

  /** A JSON number as read: its double `value` and whether it was an integer literal
   *  within the IEEE-754 safe range (Python's int, not float). */
  class JsonNumber {
    constructor(value, integer) {
      this.value = value;
      this.integer = integer;
    }
  }

  class JsonSyntaxError extends Error {}
  class CanonicalError extends Error {}

  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const HEX4 = /^[0-9a-fA-F]{4}$/;
  const ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

  /** Parse `text` as one strict JSON value. Objects have no prototype (so "__proto__"
   *  is an ordinary member); numbers are JsonNumber. Throws JsonSyntaxError. */
  function parseJSON(text) {
    let i = 0;
    const n = text.length;

    function error(message) {
      throw new JsonSyntaxError(message + " (at character " + i + ")");
    }
    function skipSpace() {
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c !== 32 && c !== 9 && c !== 10 && c !== 13) break;
        i++;
      }
    }
    function literal(word, value) {
      if (!text.startsWith(word, i)) error("unexpected character " + JSON.stringify(text[i]));
      i += word.length;
      return value;
    }
    function number() {
      NUMBER.lastIndex = i;
      const match = NUMBER.exec(text);
      if (match === null) error("malformed number");
      const written = match[0];
      i += written.length;
      if (match[1] === undefined && match[2] === undefined) {
        if (written.replace("-", "").length > MAX_INT_DIGITS) {
          error("an integer with more than " + MAX_INT_DIGITS + " digits");
        }
        const value = Number(written);
        if (!Number.isFinite(value)) error("an integer too large for a double");
        // Rounding is monotone and 2**53 is a double, so this is |integer| <= 2**53-1.
        const integer = Math.abs(value) <= SAFE_INT;
        return new JsonNumber(value === 0 ? 0 : value, integer);
      }
      return new JsonNumber(Number(written), false);
    }
    function string() {
      i++; // the opening quote
      let out = "";
      let start = i;
      for (;;) {
        if (i >= n) error("unterminated string");
        const c = text.charCodeAt(i);
        if (c === 34) {
          out += text.slice(start, i);
          i++;
          return out;
        }
        if (c === 92) {
          out += text.slice(start, i);
          const escape = text[i + 1];
          if (escape === "u") {
            const hex = text.slice(i + 2, i + 6);
            if (!HEX4.test(hex)) error("invalid \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            i += 6;
          } else if (escape !== undefined && Object.prototype.hasOwnProperty.call(ESCAPES, escape)) {
            out += ESCAPES[escape];
            i += 2;
          } else {
            error("invalid escape");
          }
          start = i;
          continue;
        }
        if (c < 0x20) error("a control character inside a string");
        i++;
      }
    }
    function value(depth) {
      if (depth > MAX_DEPTH) error("nested too deeply");
      skipSpace();
      const c = text[i];
      if (c === "{") return object(depth);
      if (c === "[") return array(depth);
      if (c === '"') return string();
      if (c === "-" || (c >= "0" && c <= "9")) return number();
      if (c === "t") return literal("true", true);
      if (c === "f") return literal("false", false);
      if (c === "n") return literal("null", null);
      return error(i >= n ? "unexpected end of text" : "unexpected character " + JSON.stringify(c));
    }
    function object(depth) {
      i++;
      const out = Object.create(null);
      skipSpace();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') error("expected a member name");
        const name = string();
        if (Object.prototype.hasOwnProperty.call(out, name)) {
          error("duplicate member name " + JSON.stringify(name.slice(0, 60)));
        }
        skipSpace();
        if (text[i] !== ":") error("expected ':'");
        i++;
        out[name] = value(depth + 1);
        skipSpace();
        if (text[i] === ",") {
          i++;
        } else if (text[i] === "}") {
          i++;
          return out;
        } else {
          error("expected ',' or '}'");
        }
      }
    }
    function array(depth) {
      i++;
      const out = [];
      skipSpace();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        skipSpace();
        if (text[i] === ",") {
          i++;
        } else if (text[i] === "]") {
          i++;
          return out;
        } else {
          error("expected ',' or ']'");
        }
      }
    }

    const result = value(0);
    skipSpace();
    if (i !== n) error("extra data after the JSON value");
    return result;
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof JsonNumber);
  }

  const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;

  function wellFormed(text) {
    return typeof text.isWellFormed === "function" ? text.isWellFormed() : !LONE_SURROGATE.test(text);
  }

  const JCS_ESCAPE = /["\\\u0000-\u001f]/g;
  const SHORT = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

  function quote(text) {
    if (!wellFormed(text)) throw new CanonicalError("a string holds a lone surrogate, which UTF-8 cannot carry");
    return '"' + text.replace(JCS_ESCAPE, function (c) {
      return SHORT[c] || "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
    }) + '"';
  }

  function serialize(value, out, depth) {
    if (depth > MAX_DEPTH) throw new CanonicalError("nested too deeply");
    if (value === null) out.push("null");
    else if (value === true) out.push("true");
    else if (value === false) out.push("false");
    else if (value instanceof JsonNumber || typeof value === "number") {
      const number = value instanceof JsonNumber ? value.value : value;
      if (!Number.isFinite(number)) throw new CanonicalError("the number " + number + " has no JSON form");
      out.push(Object.is(number, -0) ? "0" : String(number)); // RFC 8785 §3.2.2.3
    } else if (typeof value === "string") out.push(quote(value));
    else if (Array.isArray(value)) {
      out.push("[");
      value.forEach(function (item, index) {
        if (index) out.push(",");
        serialize(item, out, depth + 1);
      });
      out.push("]");
    } else if (isObject(value)) {
      // Array.prototype.sort compares strings by UTF-16 code units, as RFC 8785 §3.2.3 asks.
      const names = Object.keys(value).sort();
      out.push("{");
      names.forEach(function (name, index) {
        if (index) out.push(",");
        out.push(quote(name), ":");
        serialize(value[name], out, depth + 1);
      });
      out.push("}");
    } else {
      throw new CanonicalError("a value of type " + typeof value + " is not JSON");
    }
  }

  /** The RFC 8785 canonical text of a JSON value. Throws CanonicalError. */
  function canonicalText(value) {
    const out = [];
    serialize(value, out, 0);
    return out.join("");
  }

  /** The RFC 8785 canonical UTF-8 bytes of a JSON value. Throws CanonicalError. */
  function canonicalBytes(value) {
    return new TextEncoder().encode(canonicalText(value));
  }

  const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

  function b64encode(bytes) {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  /** Decode canonical padded base64; throws Error naming what is wrong. */
  function b64decodeStrict(text) {
    if (typeof text !== "string") throw new Error("expected base64 text");
    // Python's message order: non-ASCII, then invalid base64, then non-canonical.
    if (/[^\u0000-\u007f]/.test(text)) throw new Error("base64 text contains non-ASCII characters");
    if (!BASE64.test(text)) throw new Error("invalid base64");
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    if (b64encode(bytes) !== text) throw new Error("base64 is not in canonical form");
    return bytes;
  }

  function hex(bytes) {
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function fromHex(text) {
    const bytes = new Uint8Array(text.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
    return bytes;
  }

  function concat() {
    let size = 0;
    for (const part of arguments) size += part.length;
    const out = new Uint8Array(size);
    let at = 0;
    for (const part of arguments) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** Length in Unicode code points (Python's len of a str). */
  function codePoints(text) {
    const pairs = text.match(/[\ud800-\udbff][\udc00-\udfff]/g);
    return text.length - (pairs ? pairs.length : 0);
  }

  window.ClearanceFormats = {
    JsonNumber: JsonNumber, JsonSyntaxError: JsonSyntaxError, CanonicalError: CanonicalError,
    parseJSON: parseJSON, isObject: isObject, canonicalText: canonicalText,
    canonicalBytes: canonicalBytes, wellFormed: wellFormed, b64encode: b64encode,
    b64decodeStrict: b64decodeStrict, hex: hex, fromHex: fromHex, concat: concat,
    equalBytes: equalBytes, codePoints: codePoints, SAFE_INT: SAFE_INT,
  };
})();
