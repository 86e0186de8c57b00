"""clearance's implementation. Private: no compatibility promise; import from ``clearance``."""
