"""What LightGBM-based forecasters share: encoding a frame and training mean + quantile boosters."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from demand_assets.forecasting.panel import QUANTILES, TARGET

__all__ = ["CATEGORICAL", "RoundProgress", "booster_params", "category_vocab", "encode", "predict_with_margin", "train_boosters", "train_on_dask"]

log = logging.getLogger(__name__)

CATEGORICAL = ("COUNTRY", "PRODUCT", "CATEGORY")


def booster_params(*, learning_rate: float, num_leaves: int, min_data_in_leaf: int, seed: int, **extra) -> dict:
    """LightGBM parameters every booster here shares: deterministic and quiet."""
    return {
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_data_in_leaf,
        "seed": seed,
        "deterministic": True,
        "verbosity": -1,
        **extra,
    }


def category_vocab(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Integer codes for the categorical columns present; unseen values encode as missing."""
    return {c: {v: i for i, v in enumerate(sorted(frame[c].unique().to_list()))} for c in CATEGORICAL if c in frame.columns}


def encode(frame: pl.DataFrame, features: Sequence[str], vocab: dict[str, dict[str, int]]) -> np.ndarray:
    """The feature matrix: float32, column-major, filled one column at a time, so a 22-million-row
    panel costs the matrix plus one column rather than a float64 copy of the frame and another
    of the array (LightGBM takes column-major float32 without copying)."""
    out = np.empty((frame.height, len(features)), dtype=np.float32, order="F")
    for j, c in enumerate(features):
        column = frame[c]
        if c in vocab:
            column = column.replace_strict(vocab[c], default=None, return_dtype=pl.Float32)
        out[:, j] = column.cast(pl.Float32).to_numpy()
    return out


def train_boosters(
    rows: pl.DataFrame,
    features: Sequence[str],
    vocab: dict[str, dict[str, int]],
    params: dict,
    *,
    num_boost_round: int,
    censoring_aware: bool,
    tweedie_variance_power: float = 1.2,
    quantile_max_rows: int | None = None,
    base_margins: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    dask_client: Any = None,
) -> dict[str, lgb.Booster]:
    """A Tweedie booster for the mean and one quantile booster per QUANTILES level.

    Censoring-aware: stockout rows (IN_STOCK false) get zero weight, so sales capped by an
    empty shelf are not learned as demand.

    `quantile_max_rows`: the quantile boosters train on a seeded random subset of at most this
    many rows. LightGBM re-estimates every leaf of a quantile tree as a weighted percentile of
    its rows, which makes a quantile round about twice as slow as a Tweedie round; a tail
    quantile needs far fewer rows than the mean to be estimated well, so on large panels this
    cuts training time by most of the quantile share at little cost in accuracy.

    `base_margins` (name -> one value per row): boosting starts from these raw scores instead
    of a constant (log scale for the Tweedie mean, the quantile itself for quantile boosters),
    so the trees learn a correction of a given forecast. Predict with `predict_with_margin`.

    `dask_client` (a `distributed.Client`): train with `lightgbm.dask` instead, on that cluster's
    workers (`train_on_dask`); the boosters come back as ordinary local ones.
    """
    margins = base_margins or {}
    objectives = {"mean": {"objective": "tweedie", "tweedie_variance_power": tweedie_variance_power}}
    objectives |= {f"p{int(q * 100)}": {"objective": "quantile", "alpha": q} for q in QUANTILES}
    subset = None
    if quantile_max_rows is not None and rows.height > quantile_max_rows:
        subset = np.sort(np.random.default_rng(seed).choice(rows.height, size=quantile_max_rows, replace=False))
    if dask_client is not None:
        if margins:
            raise ValueError("boosters that start from base margins (the hybrid's stage 2) train locally, not on dask")
        return train_on_dask(
            dask_client, rows, features, vocab, params, objectives, num_boost_round=num_boost_round, censoring_aware=censoring_aware, subset=subset
        )
    x = encode(rows, features, vocab)
    y = rows[TARGET].cast(pl.Float64).to_numpy()
    weight = _weights(rows, censoring_aware)

    # Boosters without their own margin share a binned dataset. Every dataset is binned before
    # training starts, with the boosters' parameters, and then the float matrix is let go: at M5
    # size it is 1.3 GB that the binned copy (a byte a value) replaces for the whole training.
    built: dict[tuple[str, bool], lgb.Dataset] = {}
    datasets: dict[str, lgb.Dataset] = {}
    for name in objectives:
        idx = None if name == "mean" else subset
        key = (name if name in margins else "", idx is None)
        if key not in built:
            built[key] = lgb.Dataset(
                _take(x, idx),
                _take(y, idx),
                weight=_take(weight, idx),
                init_score=_take(margins[name], idx) if name in margins else None,
                feature_name=list(features),
                categorical_feature=list(vocab),
                params=params,
                free_raw_data=True,
            ).construct()
        datasets[name] = built[key]
    rows_of = {name: dataset.num_data() for name, dataset in datasets.items()}
    del x, y, weight, built

    boosters = {}
    for name, objective in objectives.items():
        progress = RoundProgress(name, num_boost_round, rows_of[name])
        boosters[name] = lgb.train(params | objective, datasets[name], num_boost_round=num_boost_round, callbacks=[progress])
    return boosters


def _take(values: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return values if idx is None else values[idx]


def _weights(rows: pl.DataFrame, censoring_aware: bool) -> np.ndarray:
    """Zero weight on stockout days when censoring-aware, else one."""
    return rows["IN_STOCK"].cast(pl.Float64).to_numpy() if censoring_aware else np.ones(rows.height)


def train_on_dask(
    client: Any,
    rows: pl.DataFrame,
    features: Sequence[str],
    vocab: dict[str, dict[str, int]],
    params: dict,
    objectives: dict[str, dict],
    *,
    num_boost_round: int,
    censoring_aware: bool,
    subset: np.ndarray | None = None,
) -> dict[str, lgb.Booster]:
    """The same boosters trained with `lightgbm.dask` (distributed data-parallel LightGBM) on the
    cluster behind `client`, for a training set larger than one worker's memory.

    The rows are encoded a slice at a time, one slice per worker, and each slice's matrix, target
    and weights are placed on its worker, so the feature matrix is never whole in one process
    (this step holds the polars rows and one slice's matrix; each worker holds its slice and its
    share of LightGBM's binned dataset). The workers then train together over LightGBM's own
    sockets, and the boosters come back as local `lgb.Booster`s. Not bitwise equal to a local
    fit: each worker bins its features from its own rows, so split points differ slightly (the
    forecasts agree to a few percent; tests/test_compute.py states the tolerance)."""
    import dask.array as da
    from lightgbm.dask import DaskLGBMRegressor

    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise RuntimeError("the Dask cluster has no workers to train LightGBM on")
    y_all = rows[TARGET].cast(pl.Float64).to_numpy()
    w_all = _weights(rows, censoring_aware)
    placed: list[Any] = []

    def on_workers(take: np.ndarray | None) -> tuple[Any, Any, Any]:
        n = rows.height if take is None else len(take)
        bounds = np.linspace(0, n, min(len(workers), n) + 1).astype(int)
        parts: list[list[Any]] = [[], [], []]
        for worker, a, b in zip(workers, bounds[:-1], bounds[1:]):
            index = np.arange(a, b) if take is None else take[a:b]
            x = encode(rows[index], features, vocab)
            arrays = [np.ascontiguousarray(x), y_all[index], w_all[index]]
            futures = client.scatter(arrays, workers=[worker])
            placed.extend(futures)
            for out, array, future in zip(parts, arrays, futures):
                out.append(da.from_delayed(future, shape=array.shape, dtype=array.dtype))
        return tuple(da.concatenate(p) for p in parts)

    data = {True: on_workers(None)}
    if subset is not None:
        data[False] = on_workers(subset)
    shared = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs")}
    boosters = {}
    try:
        for name, objective in objectives.items():
            x, y, w = data[name == "mean" or subset is None]
            started = time.perf_counter()
            model = DaskLGBMRegressor(client=client, n_estimators=num_boost_round, **(shared | objective))
            with client.as_current():  # lightgbm.dask waits on its parts through the current client
                model.fit(x, y, sample_weight=w, feature_name=list(features), categorical_feature=[list(features).index(c) for c in vocab])
            boosters[name] = model.to_local().booster_
            log.info(
                "lightgbm %s booster on dask: %d rounds on %s rows across %d workers, %.1fs",
                name, num_boost_round, f"{x.shape[0]:,}", len(workers), time.perf_counter() - started,
            )  # fmt: skip
    finally:
        client.cancel(placed)
    return boosters


class RoundProgress:
    """A LightGBM callback logging a booster's progress about every tenth of its rounds: rounds
    done / total, elapsed seconds and rounds per second (a long unit shows it is moving)."""

    def __init__(self, name: str, rounds: int, rows: int, every: int | None = None) -> None:
        self.name, self.rounds, self.rows = name, rounds, rows
        self.every = every or max(1, rounds // 10)
        self.started = time.perf_counter()

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        done = env.iteration + 1
        if done % self.every and done != self.rounds:
            return
        elapsed = time.perf_counter() - self.started
        log.info(
            "lightgbm %s booster: round %d/%d on %s rows, %.1fs (%.1f rounds/s)",
            self.name,
            done,
            self.rounds,
            f"{self.rows:,}",
            elapsed,
            done / max(elapsed, 1e-9),
        )


def predict_with_margin(models: dict[str, lgb.Booster], x: np.ndarray, margins: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Predictions of boosters trained from `base_margins`: raw score plus the margin, through
    the objective's link (exp for the Tweedie mean, identity for quantiles)."""
    out = {}
    for name, model in models.items():
        raw = model.predict(x, raw_score=True) + margins[name]
        out[name] = np.exp(raw) if name == "mean" else raw
    return out
