"""`python -m strategies ...`: the same app the gateway mounts as `ttc strategies`."""

from .cli import main

main()
