"""The remote SDK's machinery: talking to ``clearance serve`` and trusting nothing it says.

:mod:`clearance.client` exports :class:`~clearance._internal.remote.client.Client` and
:class:`~clearance._internal.remote.async_client.AsyncClient`; everything here is
private. One module per job:

* :mod:`.settings` — every bound of the client (retries, backoff, polls) in one object;
* :mod:`.wire` — replies and the mapping of the contract's error codes
  (docs/http-api.md) to :mod:`clearance.errors`;
* :mod:`.jwks` — the gateway's verification keys, cached and refetched on an unknown kid;
* :mod:`.replay` — the in-memory single-use guard of grants this client accepted;
* :mod:`.binding` — which trace and parent an intent runs in (the running-request context);
* :mod:`.grant_check` — the local verification of every grant before a body runs;
* :mod:`.approvals` — reading approval records and pacing the long poll;
* :mod:`.outcomes` — outcome reports and their on-disk spool;
* :mod:`.reporter` — delivering reports (retries, then the spool), blocking and async;
* :mod:`.session` — the state and steps shared by the sync and async clients;
* :mod:`.transport` — the httpx calls (sync and async), with the 429 back-off;
* :mod:`.governed` — the ``@client.governed`` decorator.
"""
