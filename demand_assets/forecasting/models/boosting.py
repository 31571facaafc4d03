"""What LightGBM-based forecasters share: encoding a frame and training mean + quantile boosters."""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import polars as pl

from demand_assets.forecasting.panel import QUANTILES, TARGET

__all__ = ["CATEGORICAL", "booster_params", "category_vocab", "encode", "train_boosters"]

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
    exprs = [
        pl.col(c).replace_strict(vocab[c], default=None, return_dtype=pl.Float64) if c in vocab else pl.col(c).cast(pl.Float64)
        for c in features
    ]
    return frame.select(exprs).to_numpy()


def train_boosters(
    rows: pl.DataFrame,
    features: Sequence[str],
    vocab: dict[str, dict[str, int]],
    params: dict,
    *,
    num_boost_round: int,
    censoring_aware: bool,
    tweedie_variance_power: float = 1.2,
) -> dict[str, lgb.Booster]:
    """A Tweedie booster for the mean and one quantile booster per QUANTILES level.

    Censoring-aware: stockout rows (IN_STOCK false) get zero weight, so sales capped by an
    empty shelf are not learned as demand.
    """
    x = encode(rows, features, vocab)
    y = rows[TARGET].cast(pl.Float64).to_numpy()
    weight = rows["IN_STOCK"].cast(pl.Float64).to_numpy() if censoring_aware else np.ones_like(y)
    data = lgb.Dataset(x, y, weight=weight, feature_name=list(features), categorical_feature=list(vocab), free_raw_data=False)
    objectives = {"mean": {"objective": "tweedie", "tweedie_variance_power": tweedie_variance_power}}
    objectives |= {f"p{int(q * 100)}": {"objective": "quantile", "alpha": q} for q in QUANTILES}
    return {name: lgb.train(params | objective, data, num_boost_round=num_boost_round) for name, objective in objectives.items()}
