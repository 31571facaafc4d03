"""The honest baselines for next-event prediction: the majority class, a first-order Markov
chain on event types, and LightGBM on prefix features. Each `fit(train)` on `Sequences` and
`predict(sequences)` returns a `Prediction` (next-class and purchase-to-come probabilities)."""

from __future__ import annotations

from typing import Any

import numpy as np

from demand_assets.next_event.evaluation import Prediction
from demand_assets.next_event.sequences import CATEGORICAL, FEATURES, Sequences
from demand_assets.sources.events.world import EVENT_TYPES, NEXT_CLASSES

__all__ = ["LightGBMPrefix", "MarkovChain", "MajorityClass"]

_K = len(NEXT_CLASSES)
_PURCHASE = EVENT_TYPES.index("purchase")


class MajorityClass:
    """Every event gets the training window's class shares (so it predicts the majority class),
    and the share of events followed by a purchase."""

    name = "majority"

    def fit(self, train: Sequences, valid: Sequences | None = None) -> MajorityClass:
        counts = np.bincount(train.next_class(), minlength=_K).astype(float)
        self.shares = counts / counts.sum()
        self.purchase_rate = float(train.purchase_later().mean())
        return self

    def predict(self, sequences: Sequences) -> Prediction:
        n = sequences.rows
        return Prediction(next=np.tile(self.shares, (n, 1)), purchase=np.full(n, self.purchase_rate))

    def params(self) -> dict[str, Any]:
        return {"classes": _K}


class MarkovChain:
    """P(next class | this event's type), counted on the training window (add-one smoothing).
    P(a purchase to come) is the chain's probability of reaching a purchase before the session
    ends, from this event's type."""

    name = "markov"

    def fit(self, train: Sequences, valid: Sequences | None = None) -> MarkovChain:
        counts = np.ones((len(EVENT_TYPES), _K))
        np.add.at(counts, (train.frame["TYPE"].to_numpy(), train.next_class()), 1.0)
        self.transitions = counts / counts.sum(axis=1, keepdims=True)
        self.reach_purchase = _absorption(self.transitions)
        return self

    def predict(self, sequences: Sequences) -> Prediction:
        kind = sequences.frame["TYPE"].to_numpy().astype(int)
        return Prediction(next=self.transitions[kind], purchase=self.reach_purchase[kind])

    def params(self) -> dict[str, Any]:
        return {"order": 1, "smoothing": "add-one"}


def _absorption(p: np.ndarray) -> np.ndarray:
    """Per event type t, P(a purchase comes before the end | the chain is at t):
    h(t) = P(t -> purchase) + sum over non-purchase types u of P(t -> u) h(u)."""
    others = [i for i in range(len(EVENT_TYPES)) if i != _PURCHASE]
    a = np.eye(len(others)) - p[np.ix_(others, others)]
    h_others = np.linalg.solve(a, p[others, _PURCHASE])
    h = np.empty(len(EVENT_TYPES))
    h[others] = h_others
    h[_PURCHASE] = p[_PURCHASE, _PURCHASE] + p[_PURCHASE, others] @ h_others
    return h


class LightGBMPrefix:
    """Gradient-boosted trees on the prefix features (`FEATURES`): a multiclass model of the
    next event and a binary one of a purchase to come, each stopped early on the newest tenth of
    the training sessions."""

    name = "lightgbm"

    def __init__(self, rounds: int = 400, learning_rate: float = 0.08, leaves: int = 31, threads: int | None = None) -> None:
        self.rounds, self.learning_rate, self.leaves, self.threads = rounds, learning_rate, leaves, threads

    def _params(self, objective: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.leaves,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "verbose": -1,
            "seed": 0,
        }
        if objective == "multiclass":
            params["num_class"] = _K
        if self.threads:
            params["num_threads"] = self.threads
        return params

    def fit(self, train: Sequences, valid: Sequences | None = None) -> LightGBMPrefix:
        import lightgbm as lgb

        fit_part, stop_part = (train, valid) if valid is not None else _newest_tenth(train)
        x, xv = fit_part.features(), stop_part.features()
        categorical = [FEATURES.index(c) for c in CATEGORICAL]
        self.boosters = {}
        self.best_rounds = {}
        for key, objective, y, yv in (
            ("next", "multiclass", fit_part.next_class(), stop_part.next_class()),
            ("purchase", "binary", fit_part.purchase_later().astype(int), stop_part.purchase_later().astype(int)),
        ):
            data = lgb.Dataset(x, y, feature_name=list(FEATURES), categorical_feature=categorical, free_raw_data=True)
            check = lgb.Dataset(xv, yv, reference=data)
            booster = lgb.train(self._params(objective), data, self.rounds, valid_sets=[check], callbacks=[lgb.early_stopping(25, verbose=False)])
            self.boosters[key] = booster
            self.best_rounds[key] = int(booster.best_iteration or self.rounds)
        return self

    def predict(self, sequences: Sequences) -> Prediction:
        x = sequences.features()
        nxt = self.boosters["next"].predict(x, num_iteration=self.best_rounds["next"])
        purchase = self.boosters["purchase"].predict(x, num_iteration=self.best_rounds["purchase"])
        return Prediction(next=np.asarray(nxt).reshape(-1, _K), purchase=np.asarray(purchase))

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_rounds": self.rounds, "learning_rate": self.learning_rate, "num_leaves": self.leaves}
        out |= {f"best_rounds_{k}": v for k, v in getattr(self, "best_rounds", {}).items()}
        return out


def _newest_tenth(train: Sequences) -> tuple[Sequences, Sequences]:
    """(older sessions, the newest tenth of sessions by start) for early stopping."""
    import polars as pl

    starts = train.frame.group_by("user_session").agg(pl.col("event_time").min()).sort("event_time", "user_session")
    cut = max(1, int(starts.height * 0.9))
    newest = starts["user_session"][cut:]
    frame = train.frame
    return Sequences(frame.filter(~pl.col("user_session").is_in(newest.implode()))), Sequences(frame.filter(pl.col("user_session").is_in(newest.implode())))
