"""A temporal convolutional network for per-SKU forecasts from sales history alone (the forecast service's model).

N periods in, H periods out (defaults: 8 weeks in, 4 weeks out), one global model over every
series. Each window is scaled by the mean of its inputs (plus one, so all-zero slow movers are
fine) so series of any size share the network. Causal dilated 1-D convolutions (dilations
1, 2, 4, ... covering the input) with residual connections read the input; a linear head emits
P10, P50 and P90 for every step, made monotone by construction (P50 = P10 + softplus, P90 = P50
+ softplus) and trained with the pinball loss, and a MEAN (softplus, trained with squared
error) for what needs an expected value (costs, sums). The direct multi-step head sees no future target.

Inference is batched: the series' input windows go in chunks of `FORWARD_CHUNK` through the
model's `executor` (the step's compute backend). The network is deterministic and sees each
series alone, and on a CPU each chunk runs on one thread, so every backend gives the same
forecasts bit for bit (on 2 threads a convolution sums in another order). A forward pass is
cheap (milliseconds per thousand series on a CPU), so a local pool is used only from 8 chunks a
worker (about 130,000 series on 2 workers); a Dask cluster is for panels a step cannot hold.

Only the target is used, so a planner can upload a CSV of recent sales and get a forecast: the
global models with covariates live in the daily pipeline. Runs on a GPU when one is present.
torch is imported when a model is built (`tcn_network.py`), not with this module: a process that
only loads the code location (every Dagster step process) does not pay for it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from demand_assets.forecasting.compute import Executor, InProcess
from demand_assets.forecasting.models.base import by_steps
from demand_assets.forecasting.panel import SERIES as PANEL_KEYS
from demand_assets.forecasting.threads import thread_limit

if TYPE_CHECKING:
    from demand_assets.forecasting.models.tcn_network import TCNNetwork

__all__ = ["FORWARD_CHUNK", "PANEL_KEYS", "TCNForecaster", "TCNSettings"]

log = logging.getLogger(__name__)
# Series per forward pass sent to the executor, whatever the backend.
FORWARD_CHUNK = 8192


@dataclass(frozen=True)
class TCNSettings:
    input_len: int = 8
    horizon: int = 4
    channels: int = 32
    kernel_size: int = 2
    epochs: int = 40
    batch_size: int = 256
    max_windows: int = 50_000  # windows sampled per epoch at most
    learning_rate: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_len < 2 or self.horizon < 1 or self.epochs < 1 or self.channels < 1:
            raise ValueError("input_len >= 2, horizon >= 1, epochs >= 1 and channels >= 1 are required")


def _series_arrays(panel: pl.DataFrame, time: str, target: str) -> tuple[pl.DataFrame, list[np.ndarray]]:
    ordered = panel.sort(*PANEL_KEYS, time)
    groups = ordered.partition_by(PANEL_KEYS, maintain_order=True, as_dict=True)
    keys = pl.DataFrame([dict(zip(PANEL_KEYS, k)) for k in groups], schema={k: pl.String for k in PANEL_KEYS})
    return keys, [g[target].to_numpy().astype(np.float32) for g in groups.values()]


class TCNForecaster:
    """A `Forecaster` of period panels: fit(panel) then predict(history, future). Panel and
    history have COUNTRY, PRODUCT, a time column (one row per period, no gaps) and the target;
    future names the periods to forecast (at most `settings.horizon` per series)."""

    executor: Executor | None = None  # models pickled before batched inference had none

    def __init__(self, settings: TCNSettings = TCNSettings(), *, time: str = "PERIOD", target: str = "UNITS", executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor  # where the forward passes run; None: in this process
        self.time = time
        self.target = target
        self.device = _device()
        self.net: TCNNetwork | None = None

    def _windows(self, series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n_in, h = self.settings.input_len, self.settings.horizon
        xs, ys = [], []
        for y in series:
            if len(y) < n_in + h:
                continue
            view = np.lib.stride_tricks.sliding_window_view(y, n_in + h)
            xs.append(view[:, :n_in])
            ys.append(view[:, n_in:])
        if not xs:
            raise ValueError(f"no series has the {n_in + h} periods one training window needs")
        return np.concatenate(xs), np.concatenate(ys)

    def fit(self, panel: pl.DataFrame) -> TCNForecaster:
        import torch

        from demand_assets.forecasting.models.tcn_network import TCNNetwork, quantile_loss

        s = self.settings
        torch.manual_seed(s.seed)
        rng = np.random.default_rng(s.seed)
        _, series = _series_arrays(panel, self.time, self.target)
        x_all, y_all = self._windows(series)
        scale = x_all.mean(axis=1, keepdims=True) + 1.0
        x_all, y_all = x_all / scale, y_all / scale
        self.net = TCNNetwork(s).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=s.learning_rate)
        for epoch in range(s.epochs):
            pick = rng.permutation(len(x_all))[: s.max_windows]
            total = 0.0
            for start in range(0, len(pick), s.batch_size):
                idx = pick[start : start + s.batch_size]
                xb = torch.from_numpy(x_all[idx]).to(self.device)
                yb = torch.from_numpy(y_all[idx]).to(self.device)
                opt.zero_grad()
                loss = quantile_loss(self.net(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == s.epochs:
                log.info("tcn epoch %d/%d: loss %.4f on %d windows", epoch + 1, s.epochs, total / len(pick), len(pick))
        return self

    @property
    def horizon(self) -> int:
        return self.settings.horizon

    @property
    def min_history(self) -> int:
        return self.settings.input_len

    def predict(self, history: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
        """The periods of `future` (COUNTRY, PRODUCT, time), with STEP, P10, P50, P90 and MEAN."""
        return by_steps(future, self.time, lambda horizon: self.predict_steps(history, horizon))

    def predict_steps(self, history: pl.DataFrame, horizon: int | None = None) -> pl.DataFrame:
        """COUNTRY, PRODUCT, STEP (1..H), P10, P50, P90 and MEAN from the last
        `input_len` periods of each series."""
        if self.net is None:
            raise RuntimeError("fit the model first")
        horizon = horizon or self.settings.horizon
        if not 1 <= horizon <= self.settings.horizon:
            raise ValueError(f"horizon must lie in 1..{self.settings.horizon} (the model was trained for {self.settings.horizon} periods), got {horizon}")
        keys, series = _series_arrays(history, self.time, self.target)
        n_in = self.settings.input_len
        short = [dict(zip(PANEL_KEYS, k)) for k, y in zip(keys.iter_rows(), series) if len(y) < n_in]
        if short:
            raise ValueError(f"too little history: {len(short)} series have fewer than the {n_in} periods the model reads, e.g. {short[:3]}")
        x = np.stack([y[-n_in:] for y in series])
        scale = x.mean(axis=1, keepdims=True) + 1.0
        scaled = x / scale
        chunks = [scaled[i : i + FORWARD_CHUNK] for i in range(0, len(scaled), FORWARD_CHUNK)]
        executor = self.executor if self.executor is not None and self.device.type == "cpu" else InProcess(progress=getattr(self.executor, "progress", None))
        parts = executor.map(_forward, chunks, args=(self,), what=f"tcn forward chunks ({FORWARD_CHUNK} series each)", min_per_worker=8)
        out = np.concatenate(parts) * scale[:, :, None]
        out = np.maximum(out[:, :horizon, :], 0.0)
        n = len(series)
        return pl.DataFrame(
            {
                **{k: np.repeat(keys[k].to_numpy(), horizon) for k in PANEL_KEYS},
                "STEP": np.tile(np.arange(1, horizon + 1), n),
                "P10": out[..., 0].reshape(-1),
                "P50": out[..., 1].reshape(-1),
                "P90": out[..., 2].reshape(-1),
                "MEAN": out[..., 3].reshape(-1),
            }
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["net"] = None if self.net is None else {k: v.cpu() for k, v in self.net.state_dict().items()}
        state.pop("device", None)
        state["executor"] = None  # a registered model must not carry the step's executor
        return state

    def __setstate__(self, state: dict) -> None:
        weights = state.pop("net")
        self.__dict__.update(state)
        self.device = _device()
        self.net = None
        if weights is not None:
            from demand_assets.forecasting.models.tcn_network import TCNNetwork

            self.net = TCNNetwork(self.settings).to(self.device)
            self.net.load_state_dict(weights)


def _forward(x: np.ndarray, model: TCNForecaster) -> np.ndarray:
    """The network's output (series x horizon x 4) for scaled input windows, wherever it runs."""
    import torch

    net = model.net
    if net is None:
        raise RuntimeError("fit the model first")
    net.eval()
    # On the CPU, one thread per chunk whatever the process's budget: the convolutions split their
    # sums by thread count, so a chunk on 2 threads differed from the same chunk on a pool or Dask
    # worker's one in the 7th digit. Chunks are the unit of parallelism (the executor's workers).
    limit = thread_limit(1) if model.device.type == "cpu" else contextlib.nullcontext()
    try:
        with limit, torch.no_grad():
            return net(torch.from_numpy(x).to(model.device)).cpu().numpy()
    finally:
        net.train()


def _device() -> Any:
    """A GPU when there is one, else the CPU (a torch.device)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
