"""``python -m clearance``: the command line."""

from clearance._cli.main import main

main()
