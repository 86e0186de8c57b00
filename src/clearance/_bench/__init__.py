"""``clearance bench``: the benchmarks (private)."""
