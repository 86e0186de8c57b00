"""API key tokens: format, entropy, parsing that never raises, and the stored digest."""

from __future__ import annotations

import base64
import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from clearance._internal.apikeys import tokens


def test_a_token_is_clk_an_id_and_256_random_bits() -> None:
    key_id, token = tokens.mint()
    assert re.fullmatch(r"clk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    assert len(token) == tokens.TOKEN_LENGTH
    assert token.startswith(f"clk_{key_id}_")
    assert len(base64.urlsafe_b64decode(token[21:] + "=")) == 32  # the secret: 256 bits


def test_minted_tokens_and_ids_do_not_repeat() -> None:
    minted = [tokens.mint() for _ in range(2000)]
    assert len({k for k, _ in minted}) == len(minted)
    assert len({t for _, t in minted}) == len(minted)
    assert tokens.DECOY_KEY_ID not in {k for k, _ in minted}


def test_parse_returns_the_id_of_a_well_formed_token() -> None:
    key_id, token = tokens.mint()
    assert tokens.parse(token) == key_id
    assert tokens.parse(tokens.DECOY_TOKEN) == tokens.DECOY_KEY_ID


def test_parse_refuses_near_misses() -> None:
    _, token = tokens.mint()
    for bad in (
        token + "A",
        token[:-1],
        token + "\n",
        " " + token[1:],
        token.replace("clk_", "CLK_"),
        token[:4] + token[4:20].upper() + token[20:],  # the id is lowercase hex
        token[:20] + "-" + token[21:],
        token[:-1] + "=",
        token[:-1] + "é",
    ):
        if bad != token:
            assert tokens.parse(bad) is None, bad


@given(st.one_of(st.text(max_size=200), st.binary(max_size=80), st.integers(), st.none()))
def test_parse_never_raises(value: object) -> None:
    parsed = tokens.parse(value)
    assert parsed is None or (isinstance(value, str) and value.startswith(f"clk_{parsed}_"))


def test_the_digest_is_domain_separated_and_covers_the_id() -> None:
    key_id, token = tokens.mint()
    assert len(tokens.digest(token)) == 32
    assert tokens.digest(token) != hashlib.sha256(token.encode()).digest()
    other_id = "f" * 16 if key_id != "f" * 16 else "e" * 16
    moved = token.replace(key_id, other_id, 1)
    assert tokens.digest(moved) != tokens.digest(token)
    assert tokens.digest(tokens.DECOY_TOKEN) == tokens.DECOY_DIGEST
