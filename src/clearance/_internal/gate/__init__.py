"""The gate: trace binding, authorization, verification, execution, outcome recording."""
