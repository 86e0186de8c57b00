"""The ``clearance`` command line (private; the commands are the interface)."""
