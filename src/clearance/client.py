"""The remote SDK: the in-process gate's interface, over HTTP to ``clearance serve``.

An agent in another process (or on another host) governs its tool calls through a
gateway with an API key::

    from datetime import timedelta
    from clearance.client import Client

    with Client("http://127.0.0.1:8470", api_key, spool_dir="outcomes") as client:
        intent = {"action": "payments.send", "args": {"to": "acme", "amount": 120}}
        with client.clearance(intent, wait=timedelta(minutes=5)) as cleared:
            receipt = pay(cleared.grant)          # runs only after the grant verified HERE
            cleared.record_result(receipt)        # its digest goes into the outcome report

Every grant is verified locally before the body runs (signature against the
gateway's JWKS, issuer, audience, expiry, the digest of exactly the intent sent, and
single use in this client), so a tampered or replayed reply cannot skip the check;
outcomes are reported after the body, retried, and spooled to disk while the
gateway is down. :class:`AsyncClient` is the same on asyncio (``async with``).

Both are also exported by :mod:`clearance`. :class:`RemoteSettings` tunes a client's
retries, back-off, approval polling and leeway (``settings=``).
"""

from clearance._internal.remote.async_client import AsyncClient
from clearance._internal.remote.client import Client
from clearance._internal.remote.settings import RemoteSettings

__all__ = ["AsyncClient", "Client", "RemoteSettings"]
