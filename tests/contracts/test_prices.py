"""One cost formula for the gateway's bills, the router's predictions and the lab's labels."""

from __future__ import annotations

import numpy as np
import pytest

from contracts.prices import Price


def test_cost_is_tokens_times_price_per_million() -> None:
    price = Price(input_per_1m=0.5, output_per_1m=1.5)
    assert price.cost_usd(2_000, 1_000) == pytest.approx((2_000 * 0.5 + 1_000 * 1.5) / 1e6)
    np.testing.assert_allclose(price.cost_usd(np.array([1e6, 0.0]), np.array([0.0, 1e6])), [0.5, 1.5])


def test_the_gateway_and_the_router_price_with_it() -> None:
    from gateway.config import Price as ConfigPrice
    from router import Candidate

    assert issubclass(ConfigPrice, Price) and issubclass(Candidate, Price)
    assert ConfigPrice.cost_usd is Price.cost_usd is Candidate.cost_usd
    with pytest.raises(ValueError, match="extra"):  # the config stays strict about unknown keys
        ConfigPrice.model_validate({"input_per_1m": 1, "output_per_1m": 1, "currency": "EUR"})
