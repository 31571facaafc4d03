"""Fitting every next-event model on one time split and scoring it the same way; the at-risk
threshold; the champion rule."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from demand_assets.next_event.evaluation import PURCHASE_PREFIXES, Prediction, next_event_scores, purchase_scores
from demand_assets.next_event.sequences import Sequences
from demand_assets.sources.events.world import EVENT_TYPES, NEXT_CLASSES

__all__ = [
    "BAYES",
    "MODEL_NAMES",
    "Comparison",
    "NextEventModel",
    "at_cart",
    "at_risk_threshold",
    "build_model",
    "choose_champion",
    "compare_models",
    "flag_scores",
    "truth_probabilities",
]

BAYES = "bayes_optimal"  # the generator's truth, scored like a model (synthetic world only)
MODEL_NAMES = ("majority", "markov", "lightgbm", "gru", "cnn_bigru")
_CART = EVENT_TYPES.index("cart")


class NextEventModel(Protocol):
    name: str

    def fit(self, train: Sequences, valid: Sequences | None = None) -> Any: ...

    def predict(self, sequences: Sequences) -> Prediction: ...

    def params(self) -> dict[str, Any]: ...


def build_model(
    name: str, *, epochs: int = 6, hidden: int = 64, rounds: int = 400, threads: int | None = None, progress: Callable[[str], None] | None = None
) -> NextEventModel:
    """A fresh model by name (`MODEL_NAMES`); torch is imported only for the networks."""
    from demand_assets.next_event.baselines import LightGBMPrefix, MajorityClass, MarkovChain

    if name == "majority":
        return MajorityClass()
    if name == "markov":
        return MarkovChain()
    if name == "lightgbm":
        return LightGBMPrefix(rounds=rounds, threads=threads)
    if name in ("gru", "cnn_bigru"):
        from demand_assets.next_event.networks import CnnBiGRU, NetworkSettings, SessionGRU

        settings = NetworkSettings(epochs=epochs, hidden=hidden)
        return SessionGRU(settings, progress) if name == "gru" else CnnBiGRU(settings, progress)
    raise ValueError(f"unknown next-event model {name!r}: one of {', '.join(MODEL_NAMES)}")


def at_cart(sequences: Sequences) -> np.ndarray:
    """Rows of each session's first cart event: where the at-risk flag is decided."""
    frame = sequences.frame.with_row_index("_ROW")
    first = frame.filter(pl.col("TYPE") == _CART).group_by("user_session").agg(pl.col("_ROW").min())
    return np.sort(first["_ROW"].to_numpy())


def at_risk_threshold(purchase: np.ndarray, later: np.ndarray) -> float:
    """The P(purchase) below which a carted session is flagged: the one with the largest
    Youden's J, the share of abandoning sessions flagged (recall) minus the share of buying
    sessions flagged. F1 would flag nearly every cart when most carts are abandoned (on the
    event world about two in three are), which tells a shop nothing; J weighs a missed
    abandoner and a needlessly nudged buyer alike, per session of each kind."""
    abandoned = ~np.asarray(later, dtype=bool)
    purchase = np.asarray(purchase, dtype=float)
    if abandoned.all() or not abandoned.any():
        return 0.5
    best, best_j = 0.5, -np.inf
    for t in np.unique(np.quantile(purchase, np.linspace(0.01, 0.99, 99))):
        flagged = purchase < t
        j = flagged[abandoned].mean() - flagged[~abandoned].mean()
        if j > best_j:
            best, best_j = float(t), float(j)
    return best


def flag_scores(flagged: np.ndarray, abandoned: np.ndarray) -> dict[str, float]:
    flagged, abandoned = np.asarray(flagged, dtype=bool), np.asarray(abandoned, dtype=bool)
    hits = float((flagged & abandoned).sum())
    precision = hits / flagged.sum() if flagged.any() else float("nan")
    recall = hits / abandoned.sum() if abandoned.any() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if flagged.any() and hits else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "flagged": float(flagged.mean()) if flagged.size else float("nan")}


def truth_probabilities(test: Sequences, truth: pl.DataFrame) -> np.ndarray:
    """The generator's Bayes-optimal next-class probabilities for the test rows (`truth`: the
    world's next_event table: user_session, position, P_<class>)."""
    columns = [f"P_{c.upper()}" for c in NEXT_CLASSES]
    joined = test.frame.select("user_session", "POSITION").join(
        truth.select("user_session", pl.col("position").cast(pl.Int64).alias("POSITION"), *columns), on=["user_session", "POSITION"], how="left"
    )
    missing = joined[columns[0]].null_count()
    if missing:
        raise ValueError(f"the truth has no probabilities for {missing} of {joined.height} test events: not the log it was generated with")
    return joined.select(columns).to_numpy()


@dataclass
class Comparison:
    """Every model's scores on the test split (`metrics`, one row per MODEL), their predictions
    on it, the fitted models, and the test rows."""

    metrics: pl.DataFrame
    predictions: dict[str, Prediction]
    models: dict[str, NextEventModel]
    test: Sequences
    seconds: dict[str, float] = field(default_factory=dict)


def _scores(pred: Prediction, test: Sequences, cart_rows: np.ndarray) -> dict[str, float]:
    row = next_event_scores(pred.next, test.next_class())
    positions = test.frame["POSITION"].to_numpy()
    later = test.purchase_later()
    for k in PURCHASE_PREFIXES:
        at = positions == k - 1
        for key, value in purchase_scores(pred.purchase[at], later[at]).items():
            row[f"purchase_k{k}_{key}"] = value
    if cart_rows.size:
        for key, value in purchase_scores(pred.purchase[cart_rows], later[cart_rows]).items():
            row[f"purchase_at_cart_{key}"] = value
    return row


def compare_models(
    train: Sequences,
    test: Sequences,
    names: list[str],
    *,
    truth: np.ndarray | None = None,
    epochs: int = 6,
    rounds: int = 400,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Fit each model on `train` (early stopping on its newest tenth), score it on `test`; with
    `truth` (Bayes-optimal next-class probabilities of the test rows) a BAYES row too."""
    rows, predictions, models, seconds = [], {}, {}, {}
    cart_rows = at_cart(test)
    for name in names:
        model = build_model(name, epochs=epochs, rounds=rounds, threads=threads, progress=progress)
        started = time.perf_counter()
        model.fit(train)
        seconds[name] = time.perf_counter() - started
        pred = model.predict(test)
        epoch_seconds = getattr(getattr(model, "settings", None), "epoch_seconds", [])
        row = {"MODEL": name, **_scores(pred, test, cart_rows), "fit_seconds": seconds[name]}
        row["seconds_per_epoch"] = float(np.mean(epoch_seconds)) if epoch_seconds else float("nan")
        rows.append(row)
        predictions[name], models[name] = pred, model
        if progress:
            progress(f"{name}: fitted in {seconds[name]:.1f}s; test macro-F1 {row['macro_f1']:.4f}, log loss {row['log_loss']:.4f}, ECE {row['ece']:.4f}")
    if truth is not None:
        bayes = next_event_scores(truth, test.next_class())
        rows.append({"MODEL": BAYES, **bayes, "fit_seconds": 0.0, "seconds_per_epoch": float("nan")})
        predictions[BAYES] = Prediction(next=truth, purchase=np.full(test.rows, np.nan))
    metrics = pl.DataFrame(rows, infer_schema_length=None)
    return Comparison(metrics=metrics, predictions=predictions, models=models, test=test, seconds=seconds)


def choose_champion(metrics: pl.DataFrame, *, baseline: str = "markov") -> tuple[str | None, str]:
    """The model with the lowest next-event log loss that beats `baseline`'s; with the reason.
    The truth's row (BAYES) is a yardstick, never a candidate."""
    scores = metrics.filter(pl.col("MODEL") != BAYES).select("MODEL", "log_loss", "macro_f1").sort("log_loss")
    base = scores.filter(pl.col("MODEL") == baseline)
    if base.is_empty():
        return None, f"the baseline {baseline} was not fitted; no champion chosen"
    best = scores.filter(pl.col("MODEL") != baseline).head(1)
    if best.is_empty() or best["log_loss"][0] >= base["log_loss"][0]:
        return None, f"no model beat {baseline}'s log loss ({base['log_loss'][0]:.4f})"
    name = best["MODEL"][0]
    return name, f"{name} has the lowest log loss ({best['log_loss'][0]:.4f}), beating {baseline} ({base['log_loss'][0]:.4f})"
