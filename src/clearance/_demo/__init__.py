"""``clearance demo``: a scripted agent through the real gate (private)."""
