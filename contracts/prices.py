"""A model's price and the one cost formula.

The gateway bills with it, the router's artifact stores it and predicts cost with it, and the
lab fills missing costs in outcome rows with it: one formula, so a prediction, a bill and a
training label in USD all mean the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Token counts: one call's (ints, or a predicted float length), or numpy columns of them (the
# lab prices whole outcome matrices at once); the cost has the same shape.
Tokens = TypeVar("Tokens", float, "npt.NDArray[np.float64]")

TOKENS_PER_PRICE_UNIT = 1_000_000


class Price(BaseModel):
    """USD per one million tokens, input (prompt) and output (completion) priced apart."""

    input_per_1m: float = Field(ge=0.0)
    output_per_1m: float = Field(ge=0.0)

    def cost_usd(self, prompt_tokens: Tokens, completion_tokens: Tokens) -> Tokens:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / TOKENS_PER_PRICE_UNIT
