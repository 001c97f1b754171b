"""Concluded diagnostic probes, kept runnable (``python -m bench.archive.<name>``) so their recorded
results can be reproduced. Their conclusions are in bench/results/router/ (QUALITY.md, PROBES.md,
FINETUNE.md); live bench code never imports from here."""
