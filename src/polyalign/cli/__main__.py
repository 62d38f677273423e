"""`python -m polyalign.cli ...` (used by `accelerate launch -m polyalign.cli ...`)."""

from . import main

main()
