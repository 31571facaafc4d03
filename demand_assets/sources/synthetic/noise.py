"""Randomness keyed by date, so any day of the synthetic world can be produced on its own.

Every random draw is made by a generator seeded with (seed, stream, key...), never by a
generator that has advanced through earlier days. Slow processes are smooth curves through
keyed random knots; episodes (promotions, campaign bursts, stockouts) start on a day by a keyed
draw and are found again from a fixed look-back.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["Stream", "keyed_rng", "smooth_noise", "episode_cover"]

# Knot indices and day ordinals are offset so negative times still make valid (non-negative) seeds.
_KEY_OFFSET = 1_000_000


class Stream:
    """Stream ids: one per kind of draw, so adding a draw to one never shifts another."""

    STATIC = 1
    MACRO_ECON = 10
    MACRO_UNEMPLOYMENT = 11
    MACRO_INFLATION = 12
    SPEND_NOISE = 20
    SPEND_FLIGHT = 21
    SPEND_BURST = 22
    SPEND_BUDGET = 23
    RESPONSE_MEASUREMENT = 24
    MIX_DRIFT = 30
    PRICE_DRIFT = 31
    PROMO = 32
    DEMAND = 40
    COUNTRY_TOTAL = 42
    STOCKOUT = 41


def keyed_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *(int(k) + _KEY_OFFSET for k in keys)])


def smooth_noise(seed: int, stream: int, t: npt.NDArray[np.int64], spacing: int, n: int) -> npt.NDArray[np.float64]:
    """A smooth, autocorrelated N(0, ~1) process per column, shape (len(t), n).

    Catmull-Rom interpolation through standard-normal knots every `spacing` days; knot k is drawn
    from keyed_rng(seed, stream, k), so the value at day t depends only on the four knots
    around t.
    """
    t = np.asarray(t, dtype=np.int64)
    k0 = np.floor_divide(t, spacing)
    frac = (t - k0 * spacing) / spacing
    knots_needed = np.arange(k0.min() - 1, k0.max() + 3)
    knot_values = np.stack([keyed_rng(seed, stream, k).standard_normal(n) for k in knots_needed])
    idx = (k0 - knots_needed[0] - 1)[:, None]  # row of knot k0 - 1
    p0, p1, p2, p3 = (knot_values[idx[:, 0] + j] for j in range(4))
    u = frac[:, None]
    return 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3)


def episode_cover(starts: npt.NDArray[np.bool_], durations: npt.NDArray[np.int64], max_duration: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Which days an episode covers, and the index of the covering start (latest wins).

    `starts[t, j]` says an episode starts on day t for column j, lasting `durations[t, j]` days.
    Returns (active, start_row) with start_row = -1 where inactive. Rows earlier than
    `max_duration - 1` are only exact if the caller fed that much history.
    """
    n_days = starts.shape[0]
    active = np.zeros(starts.shape, dtype=bool)
    start_row = np.full(starts.shape, -1, dtype=np.int64)
    rows = np.arange(n_days)[:, None]
    # Oldest lag first so a later start overrides the one it overlaps.
    for lag in range(max_duration - 1, -1, -1):
        if lag >= n_days:
            continue
        covers = np.zeros(starts.shape, dtype=bool)
        covers[lag:] = starts[: n_days - lag] & (durations[: n_days - lag] > lag)
        active |= covers
        start_row = np.where(covers, rows - lag, start_row)
    return active, start_row
