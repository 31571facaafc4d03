"""Business impact: the money cost of forecast error and the value of being in stock."""
