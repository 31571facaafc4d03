"""A synthetic e-commerce event world with known truth (issue 20, point 4).

Shoppers' sessions in an online shop, in the layout of the public "eCommerce events history in
cosmetics shop" log (`EVENT_COLUMNS`), generated from a model whose every probability is known:

* **Users** have a persistent purchase propensity u ~ Beta(2, 5) and an activity weight (a few
  users come back often). A session's user is drawn by activity.
* **A session has a hidden intent**, one of `INTENTS` (browsing, comparing, buying, abandoning),
  drawn from a prior that depends on the user's propensity (`intent_prior`).
* **Event types follow a first-order Markov chain given the intent** (`TRANSITIONS`: from the
  session's start or the previous event type to the next type or the session's end). A cart on a
  product on promotion converts more often: the cart -> purchase probability is multiplied by
  `promo_lift` (the row renormalised), in every intent that can buy.
* **Products** have Zipf popularity, a category (`category_id`, its `category_code` mostly
  empty as in the public log) and often a brand. A view opens a new product with probability
  `switch`, drawn by popularity (a promoted product weighs `promo_attraction` times more);
  carts, removals and purchases act on the product of the previous event.
* **Prices and promotions**: a product's base price is log-normal; a promotion runs for a whole
  ISO week with probability `promo_share` per product and week, 20-30% off.
* **Trends**: a product's attraction drifts for weeks (`buzz`: slow waves, a different phase
  per product), so its views rise before its purchases do.
* **Daily and weekly cycles**: sessions per day follow a weekly profile and a yearly swell
  (Poisson); session starts follow an hourly profile (evening peak); events within a session
  are seconds to minutes apart.
* **Duplicates**: a share `duplicate_share` of events is written twice, exactly, as happens in
  the public log; the truth counts them, the reader must drop them.

Truth (what only the generator knows): each session's intent, and for every event the
Bayes-optimal probabilities of what follows it (`NEXT_CLASSES`: each event type or the end of
the session), computed from the user's propensity prior, the transitions and the observed
prefix by Bayes' rule over the hidden intent: the noise floor of any next-event predictor.
Purchases per product and day follow from the sessions.

Deterministic per seed; any day is produced alone (its own random stream), so a month or a
single day gives the same events for the days they share.
"""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "INTENTS",
    "NEXT_CLASSES",
    "TRANSITIONS",
    "DayEvents",
    "EventWorld",
    "write_event_files",
]

EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
NEXT_CLASSES = (*EVENT_TYPES, "end")  # what can follow an event
INTENTS = ("browsing", "comparing", "buying", "abandoning")
EVENT_COLUMNS = ("event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id", "user_session")

_VIEW, _CART, _REMOVE, _PURCHASE, _END = range(5)
_START = 4  # the row of TRANSITIONS for a session's first event
# TRANSITIONS[intent, from, to]: from view, cart, remove_from_cart, purchase, or the start;
# to view, cart, remove_from_cart, purchase, or the end of the session. Rows sum to one.
TRANSITIONS = np.array(
    [
        # browsing: views, rarely a cart, never a purchase
        [
            [0.74, 0.04, 0.00, 0.00, 0.22],
            [0.60, 0.05, 0.15, 0.00, 0.20],
            [0.60, 0.05, 0.00, 0.00, 0.35],
            [0.50, 0.00, 0.00, 0.00, 0.50],
            [1.00, 0.00, 0.00, 0.00, 0.00],
        ],
        # comparing: views and carts, removals, now and then a purchase
        [
            [0.63, 0.17, 0.00, 0.00, 0.20],
            [0.50, 0.12, 0.20, 0.08, 0.10],
            [0.70, 0.10, 0.00, 0.00, 0.20],
            [0.30, 0.10, 0.00, 0.00, 0.60],
            [1.00, 0.00, 0.00, 0.00, 0.00],
        ],
        # buying: to the cart and the checkout
        [
            [0.38, 0.47, 0.00, 0.00, 0.15],
            [0.15, 0.12, 0.05, 0.63, 0.05],
            [0.50, 0.30, 0.00, 0.00, 0.20],
            [0.20, 0.10, 0.00, 0.10, 0.60],
            [0.85, 0.15, 0.00, 0.00, 0.00],
        ],
        # abandoning: fills a cart, then removes or leaves
        [
            [0.45, 0.40, 0.00, 0.00, 0.15],
            [0.35, 0.15, 0.25, 0.00, 0.25],
            [0.40, 0.10, 0.10, 0.00, 0.40],
            [0.50, 0.00, 0.00, 0.00, 0.50],
            [1.00, 0.00, 0.00, 0.00, 0.00],
        ],
    ]
)
_WEEKLY = np.array([0.95, 0.92, 0.95, 1.0, 1.02, 1.08, 1.10])  # Monday..Sunday
_HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 10, 9, 6, 4], dtype=float)
_BRANDS = ("runail", "irisk", "masura", "grattol", "bpw.style", "ingarden", "estel", "kapous", "jessnail", "uno", "lianail", "domix")
_CODES = ("appliances.environment.vacuum", "furniture.bathroom.bath", "apparel.glove", "stationery.cartrige", "accessories.bag")


def intent_prior(propensity: np.ndarray) -> np.ndarray:
    """P(intent | user's propensity u), one row per user: buying 0.08 + 0.30u, abandoning
    0.10 + 0.10u (shoppers who buy also fill carts they leave), comparing 0.25, browsing the rest."""
    u = np.asarray(propensity, dtype=float)
    buying, abandoning = 0.08 + 0.30 * u, 0.10 + 0.10 * u
    comparing = np.full_like(u, 0.25)
    return np.stack([1.0 - buying - abandoning - comparing, comparing, buying, abandoning], axis=-1)


def transition_rows(prev: np.ndarray, promo: np.ndarray, lift: float) -> np.ndarray:
    """TRANSITIONS[:, prev] for each event (n, intents, next classes), the cart -> purchase
    probability multiplied by `lift` where the product carted is on promotion."""
    rows = TRANSITIONS[:, prev, :].transpose(1, 0, 2).copy()
    boosted = (prev == _CART) & promo
    if boosted.any() and lift != 1.0:
        rows[boosted, :, _PURCHASE] *= lift
        rows[boosted] /= rows[boosted].sum(axis=-1, keepdims=True)
    return rows


@dataclass(frozen=True)
class DayEvents:
    """One day's sessions: the events (EVENT_COLUMNS, duplicates included), and the truth."""

    events: pl.DataFrame
    sessions: pl.DataFrame  # user_session, user_id, intent, events, purchases
    next_event: pl.DataFrame  # user_session, position, event_type, P_<class> for NEXT_CLASSES, next (the class that followed)
    duplicates: int


@dataclass(frozen=True)
class EventWorld:
    """The generator's settings; `small()` for tests and examples."""

    seed: int = 0
    start: dt.date = dt.date(2019, 10, 1)
    days: int = 152  # October 2019 to February 2020, as the public log
    sessions_per_day: float = 29_000.0  # about 20 million events over the 152 days
    n_products: int = 5_000
    n_categories: int = 120
    n_users: int = 400_000
    switch: float = 0.6
    promo_share: float = 0.08
    promo_lift: float = 1.6
    promo_attraction: float = 2.0
    duplicate_share: float = 0.005
    buzz_amplitude: float = 0.5  # products' slow trends in attraction (`buzz`); 0: none
    max_events: int = 80  # a session ends after max_events - 1 events

    @staticmethod
    def small(seed: int = 0, days: int = 150, start: dt.date = dt.date(2019, 10, 1)) -> EventWorld:
        """A world that generates in seconds: 60 products, 2,000 users, ~400 sessions a day."""
        return EventWorld(seed=seed, start=start, days=days, sessions_per_day=400.0, n_products=60, n_categories=8, n_users=2_000)

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days)

    @cached_property
    def _static(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        n = self.n_products
        popularity = 1.0 / np.arange(1, n + 1) ** 1.1
        popularity = rng.permutation(popularity)
        category = rng.integers(0, self.n_categories, n)
        category_ids = 1_487_580_000_000_000_000 + rng.choice(10**12, self.n_categories, replace=False)
        brand = np.where(rng.random(n) < 0.6, rng.integers(0, len(_BRANDS), n), -1)
        code = np.where(rng.random(self.n_categories) < 0.2, rng.integers(0, len(_CODES), self.n_categories), -1)
        activity = rng.pareto(1.5, self.n_users) + 1.0
        return {
            "product_id": 3_700_000 + rng.choice(2_000_000, n, replace=False),
            "popularity": popularity / popularity.sum(),
            "base_price": np.round(np.exp(rng.normal(1.6, 0.9, n)), 2).clip(0.5, 400),
            "category": category,
            "category_id": category_ids[category],
            "category_code": code[category],
            "brand": brand,
            "user_id": 400_000_000 + rng.choice(200_000_000, self.n_users, replace=False),
            "propensity": rng.beta(2.0, 5.0, self.n_users),
            "activity": activity / activity.sum(),
        }

    def products(self) -> pl.DataFrame:
        """product_id, category_id, category_code, brand, BASE_PRICE, popularity."""
        s = self._static
        return pl.DataFrame(
            {
                "product_id": s["product_id"],
                "category_id": s["category_id"],
                "category_code": [_CODES[c] if c >= 0 else None for c in s["category_code"]],
                "brand": [_BRANDS[b] if b >= 0 else None for b in s["brand"]],
                "BASE_PRICE": s["base_price"],
                "POPULARITY": s["popularity"],
            }
        )

    def users(self) -> pl.DataFrame:
        """user_id and PROPENSITY, the hidden trait behind each user's intent prior."""
        return pl.DataFrame({"user_id": self._static["user_id"], "PROPENSITY": self._static["propensity"]})

    def promo(self, day: dt.date) -> tuple[np.ndarray, np.ndarray]:
        """(on promotion, discount) per product on `day`: a promotion lasts its ISO week."""
        year, week, _ = day.isocalendar()
        rng = np.random.default_rng([self.seed, 1, year, week])
        on = rng.random(self.n_products) < self.promo_share
        discount = np.where(on, rng.uniform(0.2, 0.3, self.n_products), 0.0)
        return on, discount

    def buzz(self, day: dt.date) -> np.ndarray:
        """Each product's attraction multiplier on `day`: exp(buzz_amplitude x a sum of three slow
        waves per product, periods 14 to 90 days), so products trend up and down for weeks. Views
        show a trend before the (rarer) purchases do: the leading indicator engagement carries."""
        if self.buzz_amplitude == 0:
            return np.ones(self.n_products)
        rng = np.random.default_rng([self.seed, 3])
        periods = rng.uniform(14.0, 90.0, (self.n_products, 3))
        phases = rng.uniform(0.0, 2 * np.pi, (self.n_products, 3))
        waves = np.sin(2 * np.pi * day.toordinal() / periods + phases).sum(axis=1) / np.sqrt(1.5)  # unit variance
        return np.exp(self.buzz_amplitude * waves)

    def prices(self, day: dt.date) -> np.ndarray:
        return np.round(self._static["base_price"] * (1.0 - self.promo(day)[1]), 2)

    def expected_sessions(self, day: dt.date) -> float:
        swell = 1.0 + 0.12 * np.cos(2 * np.pi * (day.timetuple().tm_yday - 350) / 365.25)  # December's peak
        return float(self.sessions_per_day * _WEEKLY[day.weekday()] * swell)

    def day(self, day: dt.date) -> DayEvents:
        """The sessions started on `day` (their events may run past midnight), from the day's own stream."""
        s = self._static
        rng = np.random.default_rng([self.seed, 2, day.toordinal()])
        n = int(rng.poisson(self.expected_sessions(day)))
        on_promo, _ = self.promo(day)
        price = self.prices(day)
        users = rng.choice(self.n_users, n, p=s["activity"])
        prior = intent_prior(s["propensity"][users])
        intent = (rng.random(n)[:, None] > prior.cumsum(axis=1)).sum(axis=1).clip(0, len(INTENTS) - 1)
        weights = s["popularity"] * self.buzz(day) * np.where(on_promo, self.promo_attraction, 1.0)
        weights = weights / weights.sum()
        hour = rng.choice(24, n, p=_HOURLY / _HOURLY.sum())
        clock = hour * 3600.0 + rng.uniform(0, 3600, n)

        log_post = np.log(prior)  # the truth's posterior over intents, updated after each event
        prev = np.full(n, _START)
        product = rng.choice(self.n_products, n, p=weights)
        active = np.ones(n, dtype=bool)
        columns: dict[str, list[np.ndarray]] = {k: [] for k in ("session", "position", "type", "product", "clock", "truth")}
        for position in range(self.max_events):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            rows = transition_rows(prev[idx], on_promo[product[idx]], self.promo_lift)  # (k, intents, 5)
            step = rows[np.arange(idx.size), intent[idx]]
            if position == self.max_events - 1:
                step = np.zeros_like(step)
                step[:, _END] = 1.0
            nxt = (rng.random(idx.size)[:, None] > step.cumsum(axis=1)).sum(axis=1).clip(0, _END)
            ended = nxt == _END
            go = idx[~ended]
            active[idx[ended]] = False
            if go.size == 0:
                continue
            kind = nxt[~ended]
            views = kind == _VIEW
            switch = views & (rng.random(go.size) < self.switch) & (position > 0)
            if switch.any():
                product[go[switch]] = rng.choice(self.n_products, int(switch.sum()), p=weights)
            # at least a second apart: two events of a session in one second would be exact duplicates
            clock[go] += np.where(position == 0, 0.0, 1.0 + rng.exponential(45.0, go.size))
            # the truth after this event: posterior over intents given the prefix, then the mix of their rows
            k_rows = rows[~ended]
            log_post[go] += np.log(np.maximum(k_rows[np.arange(go.size), :, kind], 1e-300))
            post = np.exp(log_post[go] - log_post[go].max(axis=1, keepdims=True))
            post /= post.sum(axis=1, keepdims=True)
            after = transition_rows(kind, on_promo[product[go]], self.promo_lift)
            truth = np.einsum("ki,kic->kc", post, after)
            if position == self.max_events - 2:
                truth = np.zeros_like(truth)
                truth[:, _END] = 1.0
            for key, value in (
                ("session", go),
                ("position", np.full(go.size, position)),
                ("type", kind),
                ("product", product[go].copy()),
                ("clock", clock[go].copy()),
                ("truth", truth),
            ):
                columns[key].append(value)
            prev[go] = kind
        session = np.concatenate(columns["session"]) if columns["session"] else np.zeros(0, dtype=int)
        order_keys = (np.concatenate(columns["position"]), session) if session.size else (np.zeros(0), session)
        position = order_keys[0].astype(np.int32)
        kinds = np.concatenate(columns["type"]) if session.size else np.zeros(0, dtype=int)
        products = np.concatenate(columns["product"]) if session.size else np.zeros(0, dtype=int)
        clocks = np.concatenate(columns["clock"]) if session.size else np.zeros(0)
        truth = np.concatenate(columns["truth"]) if session.size else np.zeros((0, 5))
        follow = _what_followed(session, position, kinds)

        session_ids = _session_ids(rng, n)
        midnight = dt.datetime.combine(day, dt.time())
        times = (np.datetime64(midnight, "s") + np.floor(clocks).astype("timedelta64[s]")).astype("datetime64[us]")
        events = pl.DataFrame(
            {
                "event_time": times,
                "event_type": np.array(EVENT_TYPES)[kinds] if kinds.size else np.array([], dtype=str),
                "product_id": s["product_id"][products],
                "category_id": s["category_id"][products],
                "category_code": _labels(s["category_code"][products], _CODES),
                "brand": _labels(s["brand"][products], _BRANDS),
                "price": price[products],
                "user_id": s["user_id"][users[session]],
                "user_session": session_ids[session],
                "_position": position,
            },
            schema_overrides={"event_time": pl.Datetime("us")},
        ).sort("event_time", "user_session", "_position")
        next_event = pl.DataFrame(
            {
                "user_session": session_ids[session],
                "position": position,
                "event_type": np.array(EVENT_TYPES)[kinds] if kinds.size else np.array([], dtype=str),
                **{f"P_{c.upper()}": truth[:, i] for i, c in enumerate(NEXT_CLASSES)},
                "next": np.array(NEXT_CLASSES)[follow] if follow.size else np.array([], dtype=str),
            }
        ).sort("user_session", "position")
        counts = np.bincount(session, minlength=n)
        bought = np.bincount(session[kinds == _PURCHASE], minlength=n) if session.size else np.zeros(n, dtype=int)
        sessions = pl.DataFrame(
            {
                "user_session": session_ids,
                "user_id": s["user_id"][users],
                "DATE": [day] * n,
                "intent": np.array(INTENTS)[intent] if n else np.array([], dtype=str),
                "events": counts,
                "purchases": bought,
            }
        ).filter(pl.col("events") > 0)
        dup = rng.random(events.height) < self.duplicate_share
        duplicated = events.filter(pl.Series(dup))
        events = pl.concat([events, duplicated]).sort("event_time", "user_session", "_position").drop("_position")
        return DayEvents(events=events, sessions=sessions, next_event=next_event, duplicates=int(dup.sum()))

    def days_between(self, start: dt.date | None = None, end: dt.date | None = None) -> Iterator[tuple[dt.date, DayEvents]]:
        day, stop = start or self.start, end or self.end
        while day < stop:
            yield day, self.day(day)
            day += dt.timedelta(days=1)


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> list[str | None]:
    return [names[c] if c >= 0 else None for c in codes]


def _session_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """UUID-shaped session ids (8-4-4-4-12 hex), from the day's stream."""
    raw = rng.integers(0, 2**63, (n, 2), dtype=np.int64)
    text = [f"{a:016x}{b:016x}" for a, b in raw]
    return np.array([f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:32]}" for t in text], dtype=object)


def _what_followed(session: np.ndarray, position: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Per event, the class of the next event of its session, or end for its last event."""
    if session.size == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((position, session))
    follow = np.full(session.size, _END)
    same = session[order][1:] == session[order][:-1]
    follow[order[:-1][same]] = kinds[order][1:][same]
    return follow


def write_event_files(directory: str | Path, world: EventWorld = EventWorld(), *, compress: bool = False, progress=print) -> dict[str, int]:
    """One CSV per month in the public log's layout (`2019-Oct.csv`, gzipped with `compress`),
    its times as `2019-10-01 00:00:04 UTC`; truth/ holds sessions.parquet (each session's
    intent), next_event.parquet (the Bayes-optimal next-event probabilities) and
    product_days.parquet (purchases, price and promotion per product and day). Returns rows per file."""
    out = Path(directory)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    truths: dict[str, list[pl.DataFrame]] = {"sessions": [], "next_event": [], "product_days": [], "purchases": []}
    month: tuple[int, int] | None = None
    handle = None
    duplicates = 0
    products = world.products()
    for day, events in world.days_between():
        if (day.year, day.month) != month:
            if handle is not None:
                handle.close()
            month = (day.year, day.month)
            name = f"{day:%Y-%b}.csv" + (".gz" if compress else "")
            handle = gzip.open(out / name, "wb") if compress else open(out / name, "wb")
            written[name] = 0
            header = True
            progress(f"writing {name}")
        frame = events.events.with_columns(pl.col("event_time").dt.strftime("%Y-%m-%d %H:%M:%S UTC"))
        frame.write_csv(handle, include_header=header)
        header = False
        written[name] += frame.height
        duplicates += events.duplicates
        truths["sessions"].append(events.sessions)
        truths["next_event"].append(events.next_event)
        on, _ = world.promo(day)
        truths["product_days"].append(products.select("product_id", pl.lit(day).alias("DATE"), pl.Series("PRICE", world.prices(day)), pl.Series("PROMO", on)))
        # a purchase counts on the day of its time (a session may run past midnight)
        truths["purchases"].append(
            events.events.unique().filter(pl.col("event_type") == "purchase").select("product_id", pl.col("event_time").dt.date().alias("DATE"))
        )
    if handle is not None:
        handle.close()
    purchases = pl.concat(truths.pop("purchases")).group_by("product_id", "DATE").len("PURCHASES")
    truths["product_days"] = [
        pl.concat(truths["product_days"])
        .join(purchases, on=["product_id", "DATE"], how="left")
        .with_columns(pl.col("PURCHASES").fill_null(0).cast(pl.Int64))
        .sort("DATE", "product_id")
    ]
    for key, frames in truths.items():
        pl.concat(frames).write_parquet(out / "truth" / f"{key}.parquet")
    pl.DataFrame({"duplicates": [duplicates], "seed": [world.seed], "start": [world.start], "days": [world.days]}).write_parquet(
        out / "truth" / "world.parquet"
    )
    return written


def gzip_file(path: Path) -> Path:
    """`path` gzipped beside it (the original removed): the layout of a compressed monthly log."""
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target
