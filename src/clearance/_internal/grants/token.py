"""Grants: short-lived, single-use EdDSA JWTs bound to one intent digest.

Contract (docs/design.md §5, "Grant"): a JWT (RFC 7519) in JWS compact serialization,
signed with EdDSA over Ed25519 (RFC 8037 §3.1; the operations run on libsodium, see
:mod:`clearance._internal.grants.ed25519`), protected header exactly
``{"alg": "EdDSA", "typ": "JWT", "kid": <RFC 7638 thumbprint>}``, and exactly
the claims of :data:`CLAIMS`: ``iss``, ``aud``, ``sub`` (principal), ``jti``,
``iat``, ``nbf``, ``exp`` (NumericDate, integer seconds, RFC 7519 §2), ``act``
(action), ``idg`` (intent digest), ``pol`` (policy bundle digest), ``rid``
(request id), ``lix`` (ledger index of the decision entry), ``trc`` (the intent's
trace id) and ``par`` (its parent request id, or null).

``trc`` and ``par`` let a tool service rebuild the intent from an HTTP request (the
grant guard, :mod:`clearance._internal.guard`): they are copies of two members of
the intent that ``idg`` already binds, so they add no authority and a grant cannot
carry values in them that differ from the intent it was issued for (step 7 checks
it). They are required like every other claim, with no fallback for grants made
before they existed: such a grant lives at most 60 seconds, so none outlives an
upgrade by more than that, and a verifier that accepted two claim sets would be a
second parser to get right for no gain (a grant without ``trc`` could not be served
by a tool service anyway).

:func:`verify_grant` is the one function an executor calls. It applies every
check of docs/design.md §4 fail-closed rule 6, in this order, and only when all pass
consumes the ``jti`` (so a rejected token never burns a grant id):

1. the token is a well-formed compact JWS of bounded size;
2. the header is a UTF-8 JSON object holding only ``alg``, ``kid`` and ``typ``,
   each at most once (a repeated member is refused, never resolved "last
   wins": RFC 7515 §4, RFC 8259 §4); ``alg`` is exactly ``EdDSA`` (no
   ``none``, HMAC, RSA or ECDSA: the verification key is chosen by ``kid``
   from Ed25519 keys only);
3. ``kid`` names a known key and the Ed25519 signature verifies;
4. the payload is a JSON object with exactly the fourteen claims, each of the
   right type (``trc`` and ``par`` are a string or null; unknown claims are
   rejected, not ignored);
5. ``nbf - leeway <= now < exp + leeway`` (RFC 7519 §4.1.4-4.1.5), ``iat`` is
   not in the future, and the grant's lifetime is at most ``max_lifetime``;
6. ``aud`` and (when given) ``iss`` match;
7. ``act``, ``sub`` and ``idg`` match the intent about to run, and so do ``trc``
   and ``par`` (implied by ``idg`` for an honest issuer; checked so that the claims
   a tool service reads are never other than the ones the digest binds);
8. the replay guard accepts the ``jti`` for the first time.

Every failure is :class:`~clearance.errors.InvalidGrant` whose ``str()`` is the
opaque ``"grant rejected"`` and whose ``audit_reason`` is precise, for the audit log
only (docs/design.md §4: no error oracle). Programmer misuse (a leeway above
:data:`MAX_LEEWAY`, a non-finite clock) raises ``ValueError``. Time is always
an argument.

Why the compact serialization is assembled here rather than by PyJWT: a grant
is signed and verified on every governed call, and PyJWT's per-character
base64url validation and generic algorithm dispatch cost more than the
Ed25519 operation itself (measured on a slower day of this machine: ~110 µs to
sign and ~90 µs of overhead per verify, against ~60 µs and ~190 µs for the raw
signature). RFC 7515 §7.1 is three base64url segments joined by dots; the
signature is computed by :mod:`clearance._internal.grants.ed25519` over
``ASCII(header "." payload)`` (RFC 8037 §3.1). Tests check interoperability
both ways with PyJWT.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clearance._internal import strict_json
from clearance._internal.grants import ed25519
from clearance._internal.grants.jwk import b64url_decode, b64url_encode
from clearance._internal.grants.ring_files import SigningKey
from clearance._internal.intent import Intent
from clearance._internal.limits import DEFAULT_LIMITS, MAX_GRANT_LIFETIME
from clearance._internal.limits import MAX_LEEWAY as MAX_LEEWAY
from clearance.errors import InputError, InvalidGrant, SigningKeyError

if TYPE_CHECKING:
    # Only an annotation here; importing it at run time would load sqlite3 (through
    # the jti store) into every executor that imports clearance.executor.
    from clearance._internal.grants.jti_store import ReplayGuard

CLAIMS: Final[tuple[str, ...]] = (
    "iss",
    "aud",
    "sub",
    "jti",
    "iat",
    "nbf",
    "exp",
    "act",
    "idg",
    "pol",
    "rid",
    "lix",
    "trc",
    "par",
)
"""Every grant carries exactly these claims."""
DEFAULT_LIFETIME: Final[int] = DEFAULT_LIMITS.grant_lifetime
"""Seconds from ``nbf`` to ``exp`` of a grant built by :meth:`GrantClaims.for_intent`."""
MAX_ISSUE_LIFETIME: Final[int] = MAX_GRANT_LIFETIME
""":func:`issue_grant` refuses a longer lifetime (docs/design.md §5: at most 60 s)."""
# MAX_LEEWAY (imported above from clearance._internal.limits): the largest clock leeway
# verify_grant accepts (docs/design.md §4 rule 6).
MAX_TOKEN_CHARS: Final[int] = 8192
"""Longer tokens are rejected before any parsing."""
ALGORITHM: Final[str] = "EdDSA"

_INT_CLAIMS: Final = frozenset({"iat", "nbf", "exp", "lix"})
_NULLABLE_CLAIMS: Final = frozenset({"trc", "par"})
"""Claims that are a non-empty string or null (an intent's optional trace and parent)."""
_CLAIM_SET: Final = frozenset(CLAIMS)
_CLAIM_KINDS: Final = tuple(
    (name, "int" if name in _INT_CLAIMS else "str?" if name in _NULLABLE_CLAIMS else "str")
    for name in CLAIMS
)
_HEADER_MEMBERS: Final = frozenset({"alg", "kid", "typ"})
_HEADER_CACHE: dict[str, str] = {}
_ACCEPTED_HEADERS: dict[str, str] = {}
"""Encoded protected headers of grants that verified, mapped to their ``kid``.

A header segment is the same for every grant of a key, so after the first
grant that passed steps 2 and 3 it is recognised by string lookup instead of
being decoded and checked again (its ``kid`` must still name a known key).
Only a segment that :func:`_checked_header_kid` accepted (so one without a
repeated member) and whose grant's signature verified under a known key adds
an entry, so a forger cannot fill the cache; it is bounded by
:data:`_MAX_ACCEPTED_HEADERS` anyway.
"""
_MAX_ACCEPTED_HEADERS: Final[int] = 64


def _encoded_header(kid: str) -> str:
    """The protected header for ``kid``, base64url-encoded (cached: it never changes)."""
    encoded = _HEADER_CACHE.get(kid)
    if encoded is None:
        header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
        encoded = b64url_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))
        _HEADER_CACHE[kid] = encoded
    return encoded


def new_jti() -> str:
    """A fresh random grant id (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


def _claims_problem(claims: Mapping[str, object]) -> str | None:
    """Why ``claims`` is not exactly a well-typed claim set, or None."""
    if claims.keys() != _CLAIM_SET:
        missing = [name for name in CLAIMS if name not in claims]
        if missing:
            return f"missing claims: {', '.join(missing)}"
        unexpected = sorted(repr(name)[:40] for name in claims if name not in _CLAIM_SET)
        return f"unexpected claims: {', '.join(unexpected)}"
    for name, kind in _CLAIM_KINDS:
        value = claims[name]
        if kind == "int":
            if type(value) is not int:
                return f"claim {name} must be an integer, got {type(value).__name__}"
        elif kind == "str?":
            if value is not None and (type(value) is not str or not value):
                return f"claim {name} must be a non-empty string or null"
        elif type(value) is not str or not value:
            return f"claim {name} must be a non-empty string"
    if cast(int, claims["lix"]) < 0:
        return "claim lix must not be negative"
    return None


@dataclass(frozen=True)
class GrantClaims:
    """The claims of one grant (see the module docstring for their meaning)."""

    iss: str
    aud: str
    sub: str
    jti: str
    iat: int
    nbf: int
    exp: int
    act: str
    idg: str
    pol: str
    rid: str
    lix: int
    trc: str | None
    """The intent's ``trace_id`` (bound by ``idg`` too; for tool services rebuilding it)."""
    par: str | None
    """The intent's ``parent_id`` (bound by ``idg`` too; for tool services rebuilding it)."""

    def __post_init__(self) -> None:
        problem = _claims_problem(self.__dict__)
        if problem is not None:
            raise ValueError(problem)

    @classmethod
    def _from_checked(cls, claims: dict[str, Any]) -> GrantClaims:
        """Adopt ``claims`` (a fresh dict this module built or decoded) after checking it.

        Same result as ``GrantClaims(**claims)``, including the ValueError for a bad
        claim set, without setting fourteen frozen fields one by one: grants are built
        and verified on every governed call.
        """
        problem = _claims_problem(claims)
        if problem is not None:
            raise ValueError(problem)
        adopted = object.__new__(cls)
        object.__setattr__(adopted, "__dict__", claims)
        return adopted

    @classmethod
    def for_intent(
        cls,
        intent: Intent,
        *,
        issuer: str,
        audience: str,
        policy_digest: str,
        request_id: str,
        ledger_index: int,
        now: float,
        lifetime: int = DEFAULT_LIFETIME,
        jti: str | None = None,
    ) -> GrantClaims:
        """Claims binding ``intent`` for ``lifetime`` seconds from ``floor(now)``."""
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now!r}")
        iat = math.floor(now)
        return cls._from_checked(
            {
                "iss": issuer,
                "aud": audience,
                "sub": intent.principal,
                "jti": new_jti() if jti is None else jti,
                "iat": iat,
                "nbf": iat,
                "exp": iat + lifetime,
                "act": intent.action,
                "idg": intent.digest,
                "pol": policy_digest,
                "rid": request_id,
                "lix": ledger_index,
                "trc": intent.trace_id,
                "par": intent.parent_id,
            }
        )

    def to_json(self) -> dict[str, Any]:
        """The JWT claim set (every field is a str or int: no deep copy needed)."""
        return dict(self.__dict__)


def issue_grant(key: SigningKey, claims: GrantClaims) -> str:
    """Sign ``claims`` as an EdDSA JWT with header ``kid = key.kid``.

    Raises ValueError when ``exp - nbf`` is not in ``(0, MAX_ISSUE_LIFETIME]``
    and SigningKeyError when signing fails.
    """
    lifetime = claims.exp - claims.nbf
    if not 0 < lifetime <= MAX_ISSUE_LIFETIME or claims.exp - claims.iat > MAX_ISSUE_LIFETIME:
        raise ValueError(f"grant lifetime must be within (0, {MAX_ISSUE_LIFETIME}] seconds")
    payload = orjson.dumps(claims.to_json(), option=orjson.OPT_SORT_KEYS)
    signing_input = f"{_encoded_header(key.kid)}.{b64url_encode(payload)}"
    try:
        signature = ed25519.sign(key.private_key, signing_input.encode("ascii"))
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot sign grant: {exc}") from None
    return f"{signing_input}.{b64url_encode(signature)}"


def _decode_payload(data: bytes) -> Any:
    """Parse a claim set, refusing duplicate member names.

    Fast path: a payload that is exactly the compact, key-sorted serialization of
    what it parses to (as :func:`issue_grant` writes it) cannot repeat a member,
    since the parsed object would then serialize shorter. Anything else, such as
    another issuer's key order, goes through the strict decoder, which also gives
    the precise reason for a refusal.
    """
    try:
        parsed = orjson.loads(data)
        if type(parsed) is dict and orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS) == data:
            return parsed
    except orjson.JSONDecodeError:
        pass
    return _STRICT_JSON.decode(data.decode("utf-8"))


_STRICT_JSON: Final = json.JSONDecoder(object_pairs_hook=strict_json.no_duplicate_members)
"""Parses JSON text (a ``str``: the caller decodes UTF-8), refusing repeated member names.

Plain ``json.loads`` keeps the last of repeated members, so ``{"alg": "none",
"alg": "EdDSA"}`` would read as EdDSA to us and possibly as ``none`` to another
parser; a grant must mean one thing to every reader.
"""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked_header_kid(segment: str) -> object:
    """Step 2 on an encoded protected header: its ``kid`` (any JSON value), or InvalidGrant.

    The header must be UTF-8 (RFC 7515 §4; ``json.loads`` on bytes would also take
    UTF-16 or a byte order mark) and repeat no member name, at any depth.
    """
    try:
        header = _STRICT_JSON.decode(b64url_decode(segment).decode("utf-8"))
    except strict_json.DuplicateMember as exc:
        raise InvalidGrant(f"duplicate header member {_short(exc.name)}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidGrant(f"malformed token header: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidGrant("malformed token header: not a JSON object")
    unexpected = sorted(_short(name) for name in header if name not in _HEADER_MEMBERS)
    if unexpected:
        raise InvalidGrant(f"unexpected header parameters: {', '.join(unexpected)}")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise InvalidGrant(f"alg {_short(alg)} is not {ALGORITHM}")
    if header.get("typ", "JWT") != "JWT":
        raise InvalidGrant(f"typ {_short(header.get('typ'))} is not JWT")
    return header.get("kid")


def _verified_payload(token: object, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """Steps 1-3 and the JSON half of 4: the signed payload as a dict, or InvalidGrant."""
    if not isinstance(token, str):
        raise InvalidGrant(f"malformed token: expected a string, got {type(token).__name__}")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidGrant(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
    segments = token.split(".")
    if len(segments) != 3:
        raise InvalidGrant("malformed token: not a three-segment compact JWS")
    kid: object = _ACCEPTED_HEADERS.get(segments[0])
    cached = kid is not None
    if not cached:
        kid = _checked_header_kid(segments[0])
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidGrant(f"unknown kid {_short(kid)}")
    try:
        signature = b64url_decode(segments[2])
        payload_bytes = b64url_decode(segments[1])
    except ValueError as exc:
        raise InvalidGrant(f"malformed token: {exc}") from None
    try:
        signing_input = f"{segments[0]}.{segments[1]}".encode("ascii")
    except UnicodeEncodeError:
        raise InvalidGrant("malformed token: not ASCII") from None
    if not ed25519.verify(key, signature, signing_input):
        raise InvalidGrant(f"bad signature (kid {kid})")
    if not cached and len(_ACCEPTED_HEADERS) < _MAX_ACCEPTED_HEADERS:
        _ACCEPTED_HEADERS[segments[0]] = cast(str, kid)
    try:
        payload = _decode_payload(payload_bytes)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidGrant(f"malformed token payload: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidGrant("malformed token: payload is not a JSON object")
    return payload


def verify_grant(
    token: str,
    intent: Intent | Mapping[str, Any],
    *,
    keys: Mapping[str, Ed25519PublicKey],
    audience: str,
    now: float,
    replay: ReplayGuard,
    issuer: str | None = None,
    leeway: float = MAX_LEEWAY,
    max_lifetime: float = MAX_GRANT_LIFETIME,
) -> GrantClaims:
    """Verify ``token`` for running ``intent`` at ``now``; consume its ``jti``; return its claims.

    ``intent`` is the exact intent the executor is about to run, as an
    :class:`Intent` or as its JSON object (parsed with :meth:`Intent.from_json`).
    ``keys`` maps ``kid`` to Ed25519 public keys (see
    :func:`clearance._internal.grants.jwk.keys_from_jwks`). Raises InvalidGrant (opaque
    ``str()``, precise ``audit_reason``) on any failure; see the module docstring for
    the checks. Raises ValueError for ``leeway`` outside ``[0, MAX_LEEWAY]``, a
    non-positive ``max_lifetime``, a non-finite ``now`` or an empty ``audience``.
    """
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway must be within [0, {MAX_LEEWAY}] seconds, got {leeway!r}")
    if not 0 < max_lifetime < math.inf:
        raise ValueError(f"max_lifetime must be a positive number, got {max_lifetime!r}")
    if not math.isfinite(now):
        raise ValueError(f"now must be finite, got {now!r}")
    if not isinstance(audience, str) or not audience:
        raise ValueError("audience must be a non-empty string")

    payload = _verified_payload(token, keys)
    try:
        claims = GrantClaims._from_checked(payload)
    except ValueError as exc:
        raise InvalidGrant(str(exc)) from None

    if now < claims.nbf - leeway:
        raise InvalidGrant(f"not yet valid: nbf={claims.nbf} now={now} leeway={leeway}")
    if now >= claims.exp + leeway:
        raise InvalidGrant(f"expired: exp={claims.exp} now={now} leeway={leeway}")
    if claims.iat > now + leeway:
        raise InvalidGrant(f"issued in the future: iat={claims.iat} now={now} leeway={leeway}")
    if claims.exp <= claims.nbf:
        raise InvalidGrant(f"empty validity window: nbf={claims.nbf} exp={claims.exp}")
    if max(claims.exp - claims.nbf, claims.exp - claims.iat) > max_lifetime:
        raise InvalidGrant(
            f"lifetime too long: iat={claims.iat} nbf={claims.nbf} exp={claims.exp}, "
            f"max_lifetime={max_lifetime}"
        )
    if claims.aud != audience:
        raise InvalidGrant(f"wrong audience {_short(claims.aud)}, expected {audience!r}")
    if issuer is not None and claims.iss != issuer:
        raise InvalidGrant(f"wrong issuer {_short(claims.iss)}, expected {issuer!r}")

    try:
        bound = intent if isinstance(intent, Intent) else Intent.from_json(intent)
    except InputError as exc:
        raise InvalidGrant(f"intent to run is malformed: {exc}") from None
    if claims.act != bound.action:
        raise InvalidGrant(f"action mismatch: grant {claims.act!r}, intent {bound.action!r}")
    if claims.sub != bound.principal:
        raise InvalidGrant(f"principal mismatch: grant {claims.sub!r}, intent {bound.principal!r}")
    if claims.idg != bound.digest:
        raise InvalidGrant(f"intent digest mismatch: grant {claims.idg}, intent {bound.digest}")
    if claims.trc != bound.trace_id or claims.par != bound.parent_id:
        # Only an issuer that signed claims its own digest contradicts gets here.
        raise InvalidGrant(
            f"trace/parent claims mismatch: grant trc={_short(claims.trc)} "
            f"par={_short(claims.par)}, intent trace_id={bound.trace_id!r} "
            f"parent_id={bound.parent_id!r}"
        )

    try:
        replay.consume(claims.jti, float(claims.exp), now)
    except InvalidGrant:
        raise
    except Exception as exc:  # a third-party guard's failure must not let the grant through
        raise InvalidGrant(f"replay store unavailable: {type(exc).__name__}: {exc}") from None
    return claims


def peek_claims(token: str) -> dict[str, Any] | None:
    """UNVERIFIED claims of ``token``, for logging a rejected grant; None if unparseable.

    Nothing here is checked: not the signature, not a single claim. Never
    base a decision on the result; use :func:`verify_grant`.
    """
    try:
        segments = token.split(".")
        if len(token) > MAX_TOKEN_CHARS or len(segments) != 3:
            return None
        payload = json.loads(b64url_decode(segments[1]))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
