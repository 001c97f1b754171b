"""Offline work on strategies: never imported while serving.

* `replay`, `budget` (an in-memory `Budget`), `evaluation`: run the real
  strategies over recorded samples; `live`: record such files, or evaluate,
  over any `Generator` (the gateway supplies one);
* `simulate`: adaptive's stopping rule replayed fast over recorded problems;
* `fit_policy`, `fit_value_policy`, `fit_escalation`, `difficulty`: fit what
  the runtime loads (stopping tables, value policies with their vote weights
  and prompt difficulty, cascade's escalation model) or what evaluation
  stands in for the router with;
* `convert`: a dataset to the replay format; `cli`: `ttc strategies ...`.

Import from the modules themselves; this package re-exports nothing, so that
importing one piece does not pull in the rest.
"""
