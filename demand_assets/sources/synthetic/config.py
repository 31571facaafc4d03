"""Scale settings and the per-channel response profiles of the synthetic generator."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

__all__ = ["ChannelProfile", "CHANNEL_PROFILES", "COUNTRY_CODES", "REGIME_KINDS", "RegimeChange", "SyntheticConfig"]

# ISO codes the `holidays` package knows, so every synthetic country has real public holidays.
COUNTRY_CODES: tuple[str, ...] = (
    "US",
    "DE",
    "GB",
    "FR",
    "ES",
    "IT",
    "NL",
    "CA",
    "AU",
    "JP",
    "BR",
    "MX",
    "PL",
    "SE",
    "BE",
    "AT",
    "CH",
    "IE",
    "PT",
    "DK",
)


@dataclass(frozen=True)
class ChannelProfile:
    """How a channel spends and how demand answers it (true parameters before per-country jitter)."""

    decay: float  # geometric adstock decay per day
    max_lag: int  # days of carry-over
    daily_spend: float  # typical spend per day for a country selling 300 units a day (scales with demand)
    slope: float  # Hill shape: >1 gives an S-curve
    response_share: float  # maximum incremental demand as a share of organic demand
    weekly: tuple[float, float, float, float, float, float, float]  # Mon..Sun spend pattern
    flighted: bool  # bought in on/off weekly flights (TV, display)
    off_flight_level: float  # spend level during an off week, relative to on


CHANNEL_PROFILES: dict[str, ChannelProfile] = {
    "SEARCH": ChannelProfile(0.25, 3, 50.0, 1.2, 0.08, (1.1, 1.1, 1.05, 1.0, 0.95, 0.85, 0.95), False, 1.0),
    "SOCIAL": ChannelProfile(0.45, 7, 35.0, 1.6, 0.05, (0.9, 0.9, 0.95, 1.0, 1.05, 1.15, 1.05), False, 1.0),
    "DISPLAY": ChannelProfile(0.55, 10, 20.0, 2.0, 0.03, (1.0,) * 7, True, 0.1),
    "EMAIL": ChannelProfile(0.30, 5, 5.0, 1.0, 0.02, (1.3, 1.2, 1.2, 1.1, 1.2, 0.5, 0.5), False, 1.0),
    "TV": ChannelProfile(0.75, 14, 80.0, 2.5, 0.07, (0.9, 0.9, 0.9, 1.0, 1.1, 1.1, 1.1), True, 0.0),
    "AFFILIATE": ChannelProfile(0.20, 3, 12.0, 1.1, 0.02, (1.0,) * 7, False, 1.0),
    "RADIO": ChannelProfile(0.60, 10, 18.0, 1.8, 0.02, (1.1, 1.1, 1.1, 1.1, 1.1, 0.8, 0.7), True, 0.0),
    "OUT_OF_HOME": ChannelProfile(0.80, 14, 25.0, 2.2, 0.02, (1.0,) * 7, True, 0.0),
}


REGIME_KINDS = ("macro_shock", "channel_response", "elasticity", "product_launch")


@dataclass(frozen=True)
class RegimeChange:
    """A structural break from `start` on, so drift detection and retraining can be shown.

    - macro_shock: the economy drops: ECONOMIC_INDEX x (1 - magnitude), unemployment +10 x
      magnitude points, organic demand x (1 - magnitude).
    - channel_response: `channel` (default: the first) answers spend (1 + magnitude) times as
      strongly (negative: weaker).
    - elasticity: every product's price elasticity x (1 + magnitude).
    - product_launch: the last round(magnitude x n_products) products (at least one) sell
      nothing before `start`, then launch with twice their usual pull.
    Written `kind@YYYY-MM-DD:magnitude[:channel]`, e.g. `macro_shock@2024-10-01:0.3`.
    """

    kind: str
    start: dt.date
    magnitude: float = 0.3
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in REGIME_KINDS:
            raise ValueError(f"regime change kind must be one of {REGIME_KINDS}, got {self.kind!r}")
        if self.kind == "macro_shock" and not 0 <= self.magnitude < 1:
            raise ValueError(f"a macro shock's magnitude is the demand drop, in [0, 1); got {self.magnitude}")
        if self.kind == "product_launch" and not 0 < self.magnitude <= 1:
            raise ValueError(f"a product launch's magnitude is the share of products launched, in (0, 1]; got {self.magnitude}")
        if self.channel is not None and self.channel not in CHANNEL_PROFILES:
            raise ValueError(f"unknown channel {self.channel!r}; choose from {sorted(CHANNEL_PROFILES)}")

    @classmethod
    def parse(cls, text: str) -> RegimeChange:
        """`kind@YYYY-MM-DD:magnitude[:channel]`."""
        try:
            kind, rest = text.split("@", 1)
            parts = rest.split(":")
            return cls(kind.strip(), dt.date.fromisoformat(parts[0]), float(parts[1]) if len(parts) > 1 else 0.3, parts[2] if len(parts) > 2 else None)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"cannot read regime change {text!r}: write kind@YYYY-MM-DD:magnitude[:channel] ({exc})") from exc


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that fixes the synthetic world. Same config, same seed: same data, any order.

    `origin` is day zero of the trend and of the slow processes; data exists for any date.
    """

    seed: int = 7
    n_countries: int = 3
    n_products: int = 50
    n_channels: int = 5
    origin: dt.date = dt.date(2023, 1, 1)
    mean_units_per_series: float = 6.0
    stockout_start_rate: float = 0.012
    chunk_rows: int = 4_000_000  # product rows per generated chunk; bounds memory at M5 scale
    categories: tuple[str, ...] = field(default=("FOODS", "HOUSEHOLD", "HOBBIES"))
    regime_change: RegimeChange | None = None  # a structural break (drift) from a given date
    # CHANNEL_RESPONSE is a measurement (attribution, lift tests), not the truth: multiplicative
    # log-normal error with this coefficient of variation around the expected response.
    response_noise: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.n_countries <= len(COUNTRY_CODES):
            raise ValueError(f"n_countries must be in 1..{len(COUNTRY_CODES)}, got {self.n_countries}")
        if not 1 <= self.n_channels <= len(CHANNEL_PROFILES):
            raise ValueError(f"n_channels must be in 1..{len(CHANNEL_PROFILES)}, got {self.n_channels}")
        if self.n_products < 1:
            raise ValueError(f"n_products must be >= 1, got {self.n_products}")
        if not 0 <= self.response_noise < 2:
            raise ValueError(f"response_noise is a coefficient of variation in [0, 2), got {self.response_noise}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        change = self.regime_change
        if change is not None and change.channel is not None and change.channel not in self.channels:
            raise ValueError(f"regime change channel {change.channel!r} is not among this world's channels {self.channels}")

    @property
    def countries(self) -> tuple[str, ...]:
        return COUNTRY_CODES[: self.n_countries]

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(CHANNEL_PROFILES)[: self.n_channels]
