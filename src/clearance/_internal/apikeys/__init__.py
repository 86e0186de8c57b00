"""API keys for the runtime API (docs/design.md §6): scoped, random, stored as hashes.

:class:`ApiKeyStore` keeps them in ``HOME/apikeys.db`` (:func:`api_keys_path`);
``clearance api-keys`` manages them and ``clearance serve`` authenticates with them.
"""

from clearance._internal.apikeys.model import SCOPES, ApiKey
from clearance._internal.apikeys.store import ApiKeyStore, api_keys_path

__all__ = ["SCOPES", "ApiKey", "ApiKeyStore", "api_keys_path"]
