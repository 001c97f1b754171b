"""Test-time-compute strategies: pure async code over a `Generator` and a `Budget`.

No HTTP, no Redis, no imports of `gateway` or `router`. See `base` for the two
interfaces the gateway implements and `runner.run_strategy` for the entry point.
This package exports what serving needs; everything offline (fitting,
simulation, replay, evaluation, live recording, the `ttc strategies` CLI) is in
:mod:`strategies.lab`, which serving code never imports.

Time to first byte when the gateway streams a strategy's answer (the answer is
streamed only once chosen; until then the stream carries `: keep-alive`
comments, driven by the `progress` callback or a timer):

* `single`      -- the upstream call itself; the gateway may pass its stream through.
* `best_of_n`   -- the slowest of N parallel samples (+ one judge call for `judge`,
                   + one round of parallel grading calls for a `reward` model).
* `adaptive`    -- the sum of its waves (1 wave when the first is decisive;
                   at most ceil((N - first_wave) / wave) + 1 waves).
* `refine`      -- draft + 2 calls per round run (critique, revise); an accepted
                   first critique ends it after 2 calls.
* `scale`       -- decompose + (rating call) + every sub-problem in order
                   (System-2 steps are parallel samples or refine loops) + synthesis.

All strategies emit `ProgressEvent("final", text=...)` after the ledger is
settled and before they return.
"""

from .base import (
    Budget,
    BudgetRefused,
    CallRecord,
    Completion,
    DifficultyFn,
    Generator,
    Hold,
    SimpleHold,
    InsufficientBudget,
    ProgressCallback,
    ProgressEvent,
    RewardScorer,
    StrategyError,
    StrategyInfo,
    StrategyResult,
    Usage,
    Verifier,
)
from .escalation import EscalationModel
from .policy import ConsistencyPolicy, StoppingPolicy, TablePolicy, load_policy
from .runner import STRATEGIES, run_strategy
from .spec import STRATEGY_NAMES, TTCSpec, TTCSpecError, forced_single_reason, parse_spec
from .value_policy import ValuePolicy

__all__ = [
    "Budget", "BudgetRefused", "CallRecord", "Completion", "ConsistencyPolicy", "DifficultyFn", "EscalationModel",
    "Generator", "Hold", "InsufficientBudget", "ProgressCallback", "ProgressEvent", "RewardScorer", "SimpleHold",
    "STRATEGIES", "STRATEGY_NAMES", "StoppingPolicy", "StrategyError", "StrategyInfo", "StrategyResult", "TTCSpec",
    "TTCSpecError", "TablePolicy", "Usage", "ValuePolicy", "Verifier", "forced_single_reason", "load_policy",
    "parse_spec", "run_strategy",
]
