"""The runtime API: ``clearance serve`` (FastAPI on uvicorn) over one home's gate.

:mod:`.app` builds the application (:func:`~clearance._internal.server.app.create_app`);
every other module has one job (authentication and scopes, errors, limits, metrics, the
routes of one area). This package's ``__init__`` imports nothing, so reading the
``server:`` settings (:mod:`.settings`) never loads the web framework.
"""
