"""The synthetic retail world: a generative model of demand with known ground truth.

Structure (all multiplicative unless stated):

* Country organic demand, BASELINE_DEMAND = level x trend x weekly x yearly x holiday x macro,
  with ECONOMIC_INDEX, UNEMPLOYMENT_RATE and INFLATION_RATE as slow, autocorrelated processes
  (smooth curves through keyed random knots) that move it.
* Marketing, per country x channel: SPEND with a weekly cycle, on/off flights, campaign bursts,
  quarterly budget shifts and daily noise; the expected incremental units are
  cap x hill(adstock(SPEND)) (TRUE_RESPONSE), and CHANNEL_RESPONSE is their measurement, with
  mean-one log-normal error (`response_noise`). Country total demand T = BASELINE_DEMAND + sum
  of measured responses.
* Products allocate T (the "product-level demand allocation" of the daily CSV layout): share proportional to a
  heavy-tailed base weight x country preference x slowly drifting mix x price effect
  (price / regular price) ** elasticity x promo display lift. Promotions cut the price.
* The realised country total is negative binomial around T (mild overdispersion), and it is
  split across products by a gamma-mixed multinomial: each product's count is overdispersed
  around its allocated mean (slow movers intermittent), yet the products add up exactly to the
  country's realised total, as an aggregate in a warehouse does. BASELINE_DEMAND reports that
  realised total minus the measured media response, so BASELINE_DEMAND + sum(CHANNEL_RESPONSE)
  equals the sum of true product demand.
* Stockouts start more often on promotion and calendar-peak days and last 1-7 days;
  observed sales (PRODUCT_DEMAND) are capped on the first day of an episode (the shelf ran empty
  part-way through) and zero after it, with IN_STOCK = false on every censored day.

Every draw is keyed by (seed, stream, date), and episodes are recovered from a fixed look-back,
so any window equals the concatenation of its days and the order of generation is irrelevant.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import holidays
import numpy as np
import numpy.typing as npt
import polars as pl

from demand_assets.marketing.response import adstock_geometric, hill_saturation
from demand_assets.sources.base import Catalog, DemandSource, Domain, iter_date_chunks
from demand_assets.sources.synthetic.config import CHANNEL_PROFILES, SyntheticConfig
from demand_assets.sources.synthetic.noise import Stream, episode_cover, keyed_rng, smooth_noise

__all__ = ["SyntheticDemandSource"]

F = npt.NDArray[np.float64]
# Days simulated before a window so that carry-over (adstock <= 14 d, bursts <= 10 d) and
# episodes (promotions <= 10 d feeding stockouts <= 7 d) are exact on the window's first day.
LOOKBACK_DAYS = 32
MAX_PROMO_DAYS = 10
MAX_BURST_DAYS = 10
MAX_STOCKOUT_DAYS = 7
# Gamma shape of the country-level demand shock: ~5% day-to-day noise beyond Poisson.
COUNTRY_DISPERSION = 400.0
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class _StaticParameters:
    """Time-invariant true parameters, drawn once per (seed, scale)."""

    # per country (C,)
    level: F
    growth: F
    econ_growth: F
    weekly: F  # (C, 7)
    yearly_amplitude: F
    yearly_peak_doy: F
    christmas_lift: F
    holiday_effect: F
    unemployment_base: F
    inflation_base: F
    price_level: F
    # per country x channel, flattened c * K + k (C*K,)
    spend_level: F
    decay: F
    max_lag: npt.NDArray[np.int64]
    half_saturation: F
    slope: F
    response_cap: F
    # per product (P,)
    category: npt.NDArray[np.int64]
    base_price: F
    base_weight: F
    elasticity: F
    dispersion: F
    promo_propensity: F
    # per country x product, flattened c * P + p (C*P,)
    preference: F


def _draw_static(cfg: SyntheticConfig) -> _StaticParameters:
    n_c, n_k, n_p = cfg.n_countries, cfg.n_channels, cfg.n_products
    rng = keyed_rng(cfg.seed, Stream.STATIC, 0)
    size = rng.lognormal(0.0, 0.4, n_c)
    level = cfg.mean_units_per_series * n_p * size
    weekly_base = np.array([0.92, 0.90, 0.93, 0.98, 1.10, 1.22, 0.95])
    weekly = weekly_base[None, :] * rng.uniform(0.95, 1.05, (n_c, 7))
    weekly /= weekly.mean(axis=1, keepdims=True)

    rng = keyed_rng(cfg.seed, Stream.STATIC, 1)
    profiles = [CHANNEL_PROFILES[name] for name in cfg.channels]
    daily_spend = np.array([p.daily_spend for p in profiles])
    # Budgets follow the business: spend scales with the units a country sells (profiles are per
    # 300 units a day), so ROI stays in a realistic range at any scale.
    demand_scale = cfg.mean_units_per_series * n_p / 300.0
    spend_level = np.concatenate([daily_spend * size[c] * demand_scale * rng.uniform(0.7, 1.3, n_k) for c in range(n_c)])
    decay = np.clip(np.tile([p.decay for p in profiles], n_c) * rng.uniform(0.85, 1.15, n_c * n_k), 0.05, 0.9)
    max_lag = np.tile([p.max_lag for p in profiles], n_c).astype(np.int64)
    # Half-saturation near typical spend: the curve bends where the money is actually spent.
    half_saturation = spend_level * rng.uniform(0.6, 1.6, n_c * n_k)
    slope = np.tile([p.slope for p in profiles], n_c) * rng.uniform(0.9, 1.1, n_c * n_k)
    response_cap = np.repeat(level, n_k) * np.tile([p.response_share for p in profiles], n_c) * rng.uniform(0.6, 1.4, n_c * n_k)

    rng = keyed_rng(cfg.seed, Stream.STATIC, 2)
    n_cat = len(cfg.categories)
    cat_weights = np.array([0.5, 0.3, 0.2] + [0.1] * max(0, n_cat - 3))[:n_cat]
    category = rng.choice(n_cat, size=n_p, p=cat_weights / cat_weights.sum())
    price_centre = np.array([4.0, 9.0, 12.0] + [10.0] * max(0, n_cat - 3))[:n_cat]
    base_price = np.round(price_centre[category] * rng.lognormal(0.0, 0.5, n_p), 2) + 0.49
    base_weight = rng.lognormal(0.0, 1.4, n_p)
    elasticity = rng.uniform(-2.8, -1.2, n_p)
    dispersion = rng.uniform(2.0, 12.0, n_p)
    promo_propensity = rng.uniform(0.3, 1.5, n_p)

    rng = keyed_rng(cfg.seed, Stream.STATIC, 3)
    return _StaticParameters(
        level=level,
        growth=rng.normal(0.04, 0.02, n_c),
        econ_growth=rng.normal(0.015, 0.01, n_c),
        weekly=weekly,
        yearly_amplitude=rng.uniform(0.05, 0.15, n_c),
        yearly_peak_doy=rng.uniform(150, 230, n_c),
        christmas_lift=rng.uniform(0.2, 0.45, n_c),
        holiday_effect=rng.uniform(0.5, 0.8, n_c),
        unemployment_base=rng.uniform(3.5, 9.0, n_c),
        inflation_base=rng.uniform(1.5, 5.0, n_c),
        price_level=rng.uniform(0.85, 1.2, n_c),
        spend_level=spend_level,
        decay=decay,
        max_lag=max_lag,
        half_saturation=half_saturation,
        slope=slope,
        response_cap=response_cap,
        category=category,
        base_price=base_price,
        base_weight=base_weight,
        elasticity=elasticity,
        dispersion=dispersion,
        promo_propensity=promo_propensity,
        preference=rng.lognormal(0.0, 0.35, n_c * n_p),
    )


def _per_day(seed: int, stream: int, ordinals: npt.NDArray[np.int64], draw) -> list:
    """Apply `draw(rng)` with one generator keyed by each day: a day's numbers never depend on others."""
    return [draw(keyed_rng(seed, stream, int(o))) for o in ordinals]


@dataclass
class _World:
    """One simulated window, lookback rows already dropped. Arrays are (days, columns)."""

    date_days: npt.NDArray[np.int32]  # days since 1970-01-01
    country: dict[str, F]
    channel: dict[str, F]
    product: dict[str, np.ndarray] | None


class SyntheticDemandSource(DemandSource):
    """The default source: a deterministic synthetic world, with its ground truth exposed."""

    name = "synthetic"

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        self.params = _draw_static(self.config)
        self._catalog = self._build_catalog()

    @property
    def provides(self) -> frozenset[Domain]:
        return frozenset(Domain) - {Domain.PRODUCT_ENGAGEMENT}  # no shoppers' event log in this world

    def catalog(self) -> Catalog:
        return self._catalog

    def _build_catalog(self) -> Catalog:
        cfg = self.config
        products = pl.DataFrame(
            {
                "PRODUCT": [f"P{p + 1:05d}" for p in range(cfg.n_products)],
                "CATEGORY": [cfg.categories[c] for c in self.params.category],
                "BASE_PRICE": self.params.base_price,
            }
        )
        return Catalog(countries=cfg.countries, channels=cfg.channels, products=products)

    # ------------------------------------------------------------------ reading
    def _read(self, domain: Domain, start: dt.date, end: dt.date) -> Iterator[pl.DataFrame]:
        per_day = {
            Domain.COUNTRY_DEMAND: self.config.n_countries,
            Domain.CHANNEL_SPEND_RESPONSE: self.config.n_countries * self.config.n_channels,
        }.get(domain, self._catalog.n_series)
        # At most chunk_rows rows, and a long window in about 20 chunks of at least 30 days, so
        # that validation logs progress per chunk at any size (the world is the same however
        # it is chunked: tests/test_synthetic_source.py).
        chunk_days = min(max(1, self.config.chunk_rows // per_day), max(30, -(-(end - start).days // 20)))
        with_products = domain in (Domain.PRODUCT_DEMAND, Domain.PRODUCT_DEMAND_TRUTH)
        for a, b in iter_date_chunks(start, end, chunk_days):
            world = self._simulate(a, b, with_products=with_products)
            yield self._frame(domain, world)

    def _frame(self, domain: Domain, world: _World) -> pl.DataFrame:
        cat = self._catalog
        if domain is Domain.COUNTRY_DEMAND:
            cols = ["ECONOMIC_INDEX", "INFLATION_RATE", "UNEMPLOYMENT_RATE", "BASELINE_DEMAND"]
            return _long(world.date_days, {"COUNTRY": (cat.countries, 1)}, {c: world.country[c] for c in cols})
        if domain is Domain.CHANNEL_SPEND_RESPONSE:
            n_k = len(cat.channels)
            keys = {"COUNTRY": (cat.countries, n_k), "CHANNEL": (cat.channels, 1)}
            return _long(world.date_days, keys, {c: world.channel[c] for c in ("SPEND", "CHANNEL_RESPONSE")})
        if domain is Domain.CHANNEL_RESPONSE_TRUTH:
            n_k = len(cat.channels)
            keys = {"COUNTRY": (cat.countries, n_k), "CHANNEL": (cat.channels, 1)}
            cols = ("TRUE_RESPONSE", "ADSTOCKED_SPEND", "TRUE_DECAY", "TRUE_MAX_LAG", "TRUE_HALF_SATURATION", "TRUE_HILL_SLOPE", "TRUE_RESPONSE_CAP")
            frame = _long(world.date_days, keys, {c: world.channel[c] for c in cols})
            return frame.with_columns(pl.col("TRUE_MAX_LAG").cast(pl.Int64))
        assert world.product is not None
        n_p = len(cat.product_ids)
        keys = {"COUNTRY": (cat.countries, n_p), "PRODUCT": (cat.product_ids, 1)}
        if domain is Domain.PRODUCT_DEMAND:
            cols = ("PRODUCT_DEMAND", "PRICE", "PROMO", "IN_STOCK")
        else:
            cols = ("TRUE_DEMAND", "EXPECTED_DEMAND", "LOST_SALES")
        return _long(world.date_days, keys, {c: world.product[c] for c in cols})

    # --------------------------------------------------------------- simulation
    @functools.lru_cache(maxsize=64)  # noqa: B019 - one source object per process; the cache is the point
    def _holiday_dates(self, country: str, year: int) -> frozenset[dt.date]:
        return frozenset(holidays.country_holidays(country, years=year).keys())

    def _holiday_matrix(self, dates: list[dt.date]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(is_holiday, is_holiday_eve) per day x country."""
        cfg = self.config
        years = range(dates[0].year, dates[-1].year + 2)
        is_hol = np.zeros((len(dates), cfg.n_countries), dtype=bool)
        is_eve = np.zeros_like(is_hol)
        for c, code in enumerate(cfg.countries):
            hol = frozenset().union(*(self._holiday_dates(code, y) for y in years))
            is_hol[:, c] = [d in hol for d in dates]
            is_eve[:, c] = [(d + dt.timedelta(days=1)) in hol for d in dates]
        return is_hol, is_eve

    def _simulate(self, start: dt.date, end: dt.date, *, with_products: bool) -> _World:
        cfg, prm = self.config, self.params
        seed = cfg.seed
        ext_start = start - dt.timedelta(days=LOOKBACK_DAYS)
        n_days = (end - ext_start).days
        ordinals = np.arange(ext_start.toordinal(), ext_start.toordinal() + n_days, dtype=np.int64)
        dates = [ext_start + dt.timedelta(days=i) for i in range(n_days)]
        t = ordinals - cfg.origin.toordinal()
        years = (t / 365.25)[:, None]
        dow = (ordinals - 1) % 7  # ordinal 1 (0001-01-01) was a Monday
        doy = np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)[:, None]
        n_c, n_k = cfg.n_countries, cfg.n_channels

        # ---- country organic demand and macro indicators
        econ_z = smooth_noise(seed, Stream.MACRO_ECON, t, 60, n_c)
        economic_index = 100.0 * (1.0 + prm.econ_growth) ** years * np.exp(0.04 * econ_z)
        unemployment = np.clip(prm.unemployment_base + smooth_noise(seed, Stream.MACRO_UNEMPLOYMENT, t, 90, n_c) - 0.7 * econ_z, 1.5, 25.0)
        inflation = np.clip(prm.inflation_base + 0.9 * smooth_noise(seed, Stream.MACRO_INFLATION, t, 120, n_c), -1.0, 15.0)
        change = cfg.regime_change
        after = np.zeros(n_days, dtype=bool) if change is None else ordinals >= change.start.toordinal()
        if change is not None and change.kind == "macro_shock":
            economic_index = economic_index * np.where(after, 1.0 - change.magnitude, 1.0)[:, None]
            unemployment = unemployment + np.where(after, 10.0 * change.magnitude, 0.0)[:, None]
        macro = np.exp(0.032 * econ_z - 0.03 * (unemployment - prm.unemployment_base) - 0.015 * (inflation - prm.inflation_base))
        if change is not None and change.kind == "macro_shock":
            # The demand effect is the shock itself, not also the unemployment term of `macro`.
            macro = macro * np.exp(0.03 * np.where(after, 10.0 * change.magnitude, 0.0))[:, None] * np.where(after, 1.0 - change.magnitude, 1.0)[:, None]
        is_hol, is_eve = self._holiday_matrix(dates)
        calendar_peak = (
            prm.weekly[:, dow].T
            * (
                1.0
                + prm.yearly_amplitude * np.cos(2 * np.pi * (doy - prm.yearly_peak_doy) / 365.25)
                + prm.christmas_lift * np.exp(-(((doy - 352.0) / 9.0) ** 2))
            )
            * np.where(is_hol, prm.holiday_effect, 1.0)
            * np.where(is_eve, 1.12, 1.0)
        )
        baseline = prm.level * (1.0 + prm.growth) ** years * calendar_peak * macro

        # ---- marketing spend and its response
        n_ck = n_c * n_k
        profiles = [CHANNEL_PROFILES[name] for name in cfg.channels]
        weekly_spend = np.tile(np.array([p.weekly for p in profiles]).T[dow], (1, n_c))
        weeks = (ordinals - 1) // 7
        flight_on = {w: keyed_rng(seed, Stream.SPEND_FLIGHT, int(w)).random(n_ck) < 0.65 for w in np.unique(weeks)}
        on = np.stack([flight_on[w] for w in weeks])
        flighted = np.tile([p.flighted for p in profiles], n_c)
        off_level = np.tile([p.off_flight_level for p in profiles], n_c)
        flight = np.where(flighted & ~on, off_level, 1.0)
        burst_draws = _per_day(
            seed, Stream.SPEND_BURST, ordinals, lambda r: (r.random(n_ck) < 0.025, r.integers(3, MAX_BURST_DAYS + 1, n_ck), r.uniform(1.5, 3.0, n_ck))
        )
        b_start, b_dur, b_mult = (np.stack(x) for x in zip(*burst_draws))
        b_active, b_row = episode_cover(b_start, b_dur, MAX_BURST_DAYS)
        burst = np.where(b_active, np.take_along_axis(b_mult, np.maximum(b_row, 0), axis=0), 1.0)
        budget = np.exp(0.25 * smooth_noise(seed, Stream.SPEND_BUDGET, t, 91, n_ck))
        noise = np.exp(0.15 * np.stack(_per_day(seed, Stream.SPEND_NOISE, ordinals, lambda r: r.standard_normal(n_ck))))
        spend = np.round(prm.spend_level * weekly_spend * flight * burst * budget * noise, 2)
        adstocked = adstock_geometric(spend, prm.decay, prm.max_lag)
        cap = np.broadcast_to(prm.response_cap, (n_days, n_ck))
        if change is not None and change.kind == "channel_response":
            column = np.tile(np.array(cfg.channels) == (change.channel or cfg.channels[0]), n_c)
            cap = cap * np.where(after[:, None] & column[None, :], 1.0 + change.magnitude, 1.0)
        response = cap * hill_saturation(adstocked, prm.half_saturation, prm.slope)
        media = response.reshape(n_days, n_c, n_k).sum(axis=2)
        # What the business measures (attribution, lift tests): the expected response with
        # mean-one log-normal error. The truth domain keeps the expected response itself.
        sigma = np.sqrt(np.log1p(cfg.response_noise**2))
        error = np.exp(sigma * np.stack(_per_day(seed, Stream.RESPONSE_MEASUREMENT, ordinals, lambda r: r.standard_normal(n_ck))) - sigma**2 / 2)
        measured = response * error
        expected_total = baseline + media

        keep = slice(LOOKBACK_DAYS, None)
        kept_ordinals = ordinals[keep]
        # The realised country total: mildly overdispersed around its expectation. Drawn per day,
        # only on kept days (nothing downstream needs it in the look-back).
        realised_total = np.empty((len(kept_ordinals), n_c), dtype=np.int64)
        for i, o in enumerate(kept_ordinals):
            r = keyed_rng(seed, Stream.COUNTRY_TOTAL, int(o))
            shock = r.gamma(COUNTRY_DISPERSION, 1.0 / COUNTRY_DISPERSION, n_c)
            realised_total[i] = r.poisson(expected_total[LOOKBACK_DAYS + i] * shock)
        date_days = (kept_ordinals - _EPOCH_ORDINAL).astype(np.int32)
        ones = np.ones_like(spend[keep])
        country = {
            "ECONOMIC_INDEX": economic_index[keep],
            "INFLATION_RATE": inflation[keep],
            "UNEMPLOYMENT_RATE": unemployment[keep],
            # Reported organic demand: what was sold beyond the measured media response.
            "BASELINE_DEMAND": np.maximum(realised_total - measured[keep].reshape(-1, n_c, n_k).sum(axis=2), 0.0),
        }
        channel = {
            "SPEND": spend[keep],
            "CHANNEL_RESPONSE": measured[keep],
            "TRUE_RESPONSE": response[keep],
            "ADSTOCKED_SPEND": adstocked[keep],
            "TRUE_DECAY": ones * prm.decay,
            "TRUE_MAX_LAG": ones * prm.max_lag,
            "TRUE_HALF_SATURATION": ones * prm.half_saturation,
            "TRUE_HILL_SLOPE": ones * prm.slope,
            "TRUE_RESPONSE_CAP": cap[keep] * ones,
        }
        product = None
        if with_products:
            product = self._simulate_products(t, years, ordinals, expected_total, realised_total, calendar_peak, keep)
        return _World(date_days=date_days, country=country, channel=channel, product=product)

    def _simulate_products(
        self, t, years, ordinals, expected_total: F, realised_total: npt.NDArray[np.int64], calendar_peak: F, keep: slice
    ) -> dict[str, np.ndarray]:
        cfg, prm = self.config, self.params
        seed = cfg.seed
        n_c, n_p = cfg.n_countries, cfg.n_products
        n_cp = n_c * n_p
        n_days = len(ordinals)

        mix = np.exp(0.35 * smooth_noise(seed, Stream.MIX_DRIFT, t, 120, n_cp))
        drift = np.exp(0.04 * smooth_noise(seed, Stream.PRICE_DRIFT, t, 180, n_p)) * 1.025**years
        regular_price = np.tile(prm.base_price * drift, (1, n_c)) * np.repeat(prm.price_level, n_p)
        propensity = np.tile(prm.promo_propensity, n_c)
        promo_draws = _per_day(seed, Stream.PROMO, ordinals, lambda r: (r.random(n_cp), r.integers(3, MAX_PROMO_DAYS + 1, n_cp), r.uniform(0.1, 0.4, n_cp)))
        p_u, p_dur, p_depth = (np.stack(x) for x in zip(*promo_draws))
        promo, promo_row = episode_cover(p_u < 0.012 * propensity, p_dur, MAX_PROMO_DAYS)
        depth = np.where(promo, np.take_along_axis(p_depth, np.maximum(promo_row, 0), axis=0), 0.0)
        price = np.round(regular_price * (1.0 - depth), 2)

        change = cfg.regime_change
        after = (np.zeros(n_days, dtype=bool) if change is None else ordinals >= change.start.toordinal())[:, None]
        elasticity = np.broadcast_to(np.tile(prm.elasticity, n_c), (n_days, n_cp))
        launch = np.ones((n_days, n_cp))
        if change is not None and change.kind == "elasticity":
            elasticity = elasticity * np.where(after, 1.0 + change.magnitude, 1.0)
        if change is not None and change.kind == "product_launch":
            n_new = max(1, round(change.magnitude * n_p))
            new = np.tile(np.arange(n_p) >= n_p - n_new, n_c)[None, :]
            launch = np.where(new, np.where(after, 2.0, 0.0), 1.0)
        weight = np.tile(prm.base_weight, n_c) * prm.preference * mix * (price / regular_price) ** elasticity * np.where(promo, 1.15, 1.0) * launch
        share = weight.reshape(n_days, n_c, n_p)
        share = share / share.sum(axis=2, keepdims=True)
        expected = (expected_total[:, :, None] * share)[keep]  # the oracle mean per series-day

        # Gamma-mixed multinomial: product counts overdispersed around their means, summing
        # exactly to the country's realised total.
        dispersion = prm.dispersion
        kept_ordinals = ordinals[keep]
        kept_share = share[keep]
        true_demand = np.empty(expected.shape, dtype=np.int64)
        for i, o in enumerate(kept_ordinals):
            r = keyed_rng(seed, Stream.DEMAND, int(o))
            mixed = kept_share[i] * r.gamma(dispersion, 1.0 / dispersion, (n_c, n_p))
            true_demand[i] = r.multinomial(realised_total[i], mixed / mixed.sum(axis=1, keepdims=True))
        true_demand = true_demand.reshape(-1, n_cp)
        expected = expected.reshape(-1, n_cp)

        # Stockouts: likelier on promotion days and calendar peaks.
        peak = np.repeat(np.clip(calendar_peak, 0.5, 3.0), n_p, axis=1)
        stock_draws = _per_day(
            seed, Stream.STOCKOUT, ordinals, lambda r: (r.random(n_cp), np.minimum(r.geometric(0.45, n_cp), MAX_STOCKOUT_DAYS), r.random(n_cp))
        )
        s_u, s_dur, s_frac = (np.stack(x) for x in zip(*stock_draws))
        rate = cfg.stockout_start_rate * (1.0 + 2.0 * promo) * peak**2
        out, out_row = episode_cover(s_u < rate, s_dur, MAX_STOCKOUT_DAYS)
        out, out_row = out[keep], out_row[keep]
        first_day = out & (out_row == np.arange(n_days)[keep, None])
        cap_frac = np.take_along_axis(s_frac, np.maximum(out_row, 0), axis=0)
        # The shelf empties part-way through an episode's first day; later days sell nothing.
        observed = np.where(out, np.where(first_day, np.floor(cap_frac * true_demand), 0), true_demand).astype(np.int64)
        return {
            "PRODUCT_DEMAND": observed,
            "PRICE": price[keep],
            "PROMO": promo[keep],
            "IN_STOCK": ~out,
            "TRUE_DEMAND": true_demand,
            "EXPECTED_DEMAND": expected,
            "LOST_SALES": true_demand - observed,
        }


def _long(date_days: npt.NDArray[np.int32], keys: dict[str, tuple[tuple[str, ...], int]], values: dict[str, np.ndarray]) -> pl.DataFrame:
    """(days, columns) arrays to a long frame sorted by DATE then keys.

    `keys` maps a key column to (its labels, the stride of that key in the column index), e.g.
    COUNTRY with stride n_products and PRODUCT with stride 1 for column j = c * P + p.
    """
    n_days, n_cols = next(iter(values.values())).shape
    col_index = pl.Series(np.tile(np.arange(n_cols, dtype=np.uint32), n_days))
    data: dict[str, pl.Series] = {"DATE": pl.Series("DATE", np.repeat(date_days, n_cols)).cast(pl.Date)}
    for name, (labels, stride) in keys.items():
        idx = (col_index // stride) % len(labels)
        data[name] = pl.Series(name, labels, dtype=pl.String).gather(idx)
    for name, arr in values.items():
        data[name] = pl.Series(name, arr.reshape(-1))
    return pl.DataFrame(data)
