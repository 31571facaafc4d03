"""Recurrent next-event models (torch; CPU, or a GPU when there is one).

Both read each event's features (`FEATURES`: the categorical ones embedded, the numeric ones
standardised on the training window) and have two heads: the next class (`NEXT_CLASSES`) and a
purchase still to come.

* `SessionGRU` runs a GRU over whole sessions; its output after event t has read events 0..t.
* `CnnBiGRU`, a hybrid of a CNN and a bidirectional GRU: for each event t, the window of the session's last `window`
  events up to t, a 1-D convolution over it, then a bidirectional GRU. The backward direction
  reads the window from t back to its start, so the model never sees the session's future:
  the window holds only the prefix (a bidirectional layer over the whole session would read
  events after t and leak what it must predict).

Training: Adam, cross-entropy plus binary cross-entropy, the epoch with the lowest validation
loss kept (the newest tenth of the training sessions), seconds per epoch recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from demand_assets.next_event.evaluation import Prediction
from demand_assets.next_event.sequences import CATEGORICAL, NONE, NUMERIC, POPULARITY_BUCKETS, Sequences
from demand_assets.sources.events.world import NEXT_CLASSES

__all__ = ["CnnBiGRU", "NetworkSettings", "SessionGRU", "device"]

_K = len(NEXT_CLASSES)
# Embedding sizes (cardinality, dimension) per categorical feature.
_EMBED = {
    "TYPE": (NONE + 1, 6),
    "PREV_TYPE": (NONE + 1, 3),
    "PREV2_TYPE": (NONE + 1, 3),
    "POP_BUCKET": (POPULARITY_BUCKETS + 1, 4),
    "HOUR": (24, 4),
    "WEEKDAY": (7, 3),
}


def device() -> torch.device:
    """A GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class NetworkSettings:
    hidden: int = 64
    epochs: int = 6
    batch_events: int = 2048  # events per optimisation step (sessions or windows)
    learning_rate: float = 3e-3
    window: int = 10  # CnnBiGRU: events per window
    channels: int = 32  # CnnBiGRU: convolution channels
    max_events: int = 64  # SessionGRU: a session's first events read
    seed: int = 0
    epoch_seconds: list[float] = field(default_factory=list)


class _Encoder(nn.Module):
    """Per event: embedded categorical features and standardised numeric ones, projected."""

    def __init__(self, out: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.embeds = nn.ModuleList([nn.Embedding(*_EMBED[c]) for c in CATEGORICAL])
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        width = sum(d for _, d in _EMBED.values()) + len(NUMERIC)
        self.proj = nn.Sequential(nn.Linear(width, out), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_cat = len(CATEGORICAL)
        cats = x[..., :n_cat].long()
        parts = [emb(cats[..., i].clamp(0, emb.num_embeddings - 1)) for i, emb in enumerate(self.embeds)]
        parts.append((x[..., n_cat:] - self.mean) / self.std)
        return self.proj(torch.cat(parts, dim=-1))


class _GRUNet(nn.Module):
    def __init__(self, s: NetworkSettings, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.encoder = _Encoder(s.hidden, mean, std)
        self.gru = nn.GRU(s.hidden, s.hidden, batch_first=True)
        self.head = nn.Linear(s.hidden, _K + 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.encoder(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(out)  # (sessions, positions, classes + 1)


class _CnnBiGRUNet(nn.Module):
    def __init__(self, s: NetworkSettings, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.encoder = _Encoder(s.channels, mean, std)
        self.conv = nn.Conv1d(s.channels, s.channels, kernel_size=3)
        self.gru = nn.GRU(s.channels, s.hidden // 2, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(s.hidden, s.hidden), nn.ReLU(), nn.Linear(s.hidden, _K + 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (windows, window, features), each window left-aligned: its events, then padding.
        h = self.encoder(x).transpose(1, 2)
        h = torch.relu(self.conv(nn.functional.pad(h, (2, 0)))).transpose(1, 2)  # causal: event j sees j-2..j
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # forward state after the window's newest event, backward after its oldest
        return self.head(torch.cat([last[0], last[1]], dim=-1))  # (windows, classes + 1)


def _loss(logits: torch.Tensor, next_class: torch.Tensor, purchase: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits[:, :_K], next_class) + nn.functional.binary_cross_entropy_with_logits(logits[:, _K], purchase)


def _to_prediction(logits: np.ndarray) -> Prediction:
    z = logits[:, :_K] - logits[:, :_K].max(axis=1, keepdims=True)
    p = np.exp(z)
    return Prediction(next=p / p.sum(axis=1, keepdims=True), purchase=1.0 / (1.0 + np.exp(-logits[:, _K])))


class _Network:
    """Fitting and scoring shared by the two networks: standardisation, epochs, early stopping."""

    name = "network"
    _shape: tuple[np.ndarray, np.ndarray]  # the training window's numeric means and deviations

    def __init__(self, settings: NetworkSettings | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings or NetworkSettings()
        self.progress = progress

    # subclasses: _build(mean, std), _batches(x, starts, positions, shuffle) -> iterator of (row index arrays, tensors...), _logits(batch)
    def fit(self, train: Sequences, valid: Sequences | None = None) -> _Network:
        from demand_assets.next_event.baselines import _newest_tenth

        s = self.settings
        torch.manual_seed(s.seed)
        rng = np.random.default_rng(s.seed)
        fit_part, stop_part = (train, valid) if valid is not None else _newest_tenth(train)
        numeric = fit_part.frame.select(NUMERIC).to_numpy().astype(np.float32)
        mean, std = numeric.mean(axis=0), numeric.std(axis=0) + 1e-3
        self.device = device()
        self.net = self._build(mean, std).to(self.device)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=s.learning_rate)
        data = _Arrays.of(fit_part)
        best, best_state = float("inf"), None
        s.epoch_seconds = []
        for epoch in range(s.epochs):
            started = time.perf_counter()
            self.net.train()
            total, n = 0.0, 0
            for rows, logits in self._forward_batches(data, rng):
                loss = _loss(logits, torch.from_numpy(data.next[rows]).long().to(self.device), torch.from_numpy(data.purchase[rows]).float().to(self.device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, n = total + loss.item() * rows.size, n + rows.size
            s.epoch_seconds.append(time.perf_counter() - started)
            valid_loss = self._loss_on(stop_part)
            if valid_loss < best:
                best, best_state = valid_loss, {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            if self.progress:
                self.progress(
                    f"{self.name}: epoch {epoch + 1}/{s.epochs}, train loss {total / max(n, 1):.4f}, validation loss {valid_loss:.4f}, "
                    f"{s.epoch_seconds[-1]:.1f}s ({n / s.epoch_seconds[-1]:,.0f} events/s)"
                )
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.validation_loss = best
        return self

    def _loss_on(self, sequences: Sequences) -> float:
        data = _Arrays.of(sequences)
        pred = self._predict_arrays(data)
        p = np.clip(pred.next[np.arange(data.next.size), data.next], 1e-7, 1)
        q = np.clip(np.where(data.purchase > 0.5, pred.purchase, 1 - pred.purchase), 1e-7, 1)
        return float(-(np.log(p) + np.log(q)).mean())

    def predict(self, sequences: Sequences) -> Prediction:
        return self._predict_arrays(_Arrays.of(sequences))

    def _predict_arrays(self, data: _Arrays) -> Prediction:
        self.net.eval()
        out = np.zeros((data.next.size, _K + 1), dtype=np.float32)
        with torch.no_grad():
            for rows, logits in self._forward_batches(data, None):
                out[rows] = logits.float().cpu().numpy()
        return _to_prediction(out)

    def params(self) -> dict[str, Any]:
        s = self.settings
        return {"hidden": s.hidden, "epochs": s.epochs, "batch_events": s.batch_events, "learning_rate": s.learning_rate, "device": str(device())}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("progress", None)
        state.pop("device", None)
        if "net" in state:
            state["net"] = {k: v.cpu() for k, v in self.net.state_dict().items()}
            state["_shape"] = self._shape
        return state

    def __setstate__(self, state: dict) -> None:
        weights = state.pop("net", None)
        self.__dict__.update(state)
        self.progress = None
        self.device = device()
        if weights is not None:
            mean, std = self._shape
            self.net = self._build(mean, std).to(self.device)
            self.net.load_state_dict(weights)
            self.net.eval()

    def _forward_batches(self, data: _Arrays, rng: np.random.Generator | None):
        raise NotImplementedError

    def _build(self, mean: np.ndarray, std: np.ndarray) -> nn.Module:
        raise NotImplementedError


@dataclass
class _Arrays:
    x: np.ndarray  # (events, features)
    next: np.ndarray
    purchase: np.ndarray
    starts: np.ndarray  # per event, the row of its session's first event
    lengths: np.ndarray  # per session (in order), its events
    first: np.ndarray  # per session, its first row

    @staticmethod
    def of(sequences: Sequences) -> _Arrays:
        starts = sequences.session_starts()
        first = np.flatnonzero(starts == np.arange(starts.size))
        lengths = np.diff(np.append(first, starts.size))
        return _Arrays(sequences.features(), sequences.next_class().astype(np.int64), sequences.purchase_later().astype(np.float32), starts, lengths, first)


class SessionGRU(_Network):
    """A GRU over each session; the prediction after event t reads events 0..t."""

    name = "gru"

    def _build(self, mean: np.ndarray, std: np.ndarray) -> nn.Module:
        self._shape = (mean, std)
        return _GRUNet(self.settings, mean, std)

    def _forward_batches(self, data: _Arrays, rng: np.random.Generator | None):
        s = self.settings
        lengths = np.minimum(data.lengths, s.max_events)
        order = np.argsort(lengths, kind="stable")  # sessions of similar length batch together
        batches, current, size = [], [], 0
        for i in order:
            current.append(i)
            size += lengths[i]
            if size >= s.batch_events:
                batches.append(np.array(current))
                current, size = [], 0
        if current:
            batches.append(np.array(current))
        if rng is not None:
            rng.shuffle(batches)
        for sessions in batches:
            longest = int(lengths[sessions].max())
            offsets = np.arange(longest)
            valid = offsets[None, :] < lengths[sessions][:, None]
            idx = np.where(valid, data.first[sessions][:, None] + offsets[None, :], 0)
            x = torch.from_numpy(data.x[idx]).to(self.device)
            logits = self.net(x, torch.from_numpy(lengths[sessions]))
            yield idx[valid], logits[torch.from_numpy(valid).to(self.device)]

    def predict(self, sequences: Sequences) -> Prediction:
        # Events past max_events get the prediction after the session's max_events-th event.
        data = _Arrays.of(sequences)
        pred = self._predict_arrays(data)
        beyond = (np.arange(data.starts.size) - data.starts) >= self.settings.max_events
        if beyond.any():
            last = data.starts[beyond] + self.settings.max_events - 1
            nxt, purchase = pred.next.copy(), pred.purchase.copy()
            nxt[beyond], purchase[beyond] = nxt[last], purchase[last]
            pred = Prediction(next=nxt, purchase=purchase)
        return pred


class CnnBiGRU(_Network):
    """The hybrid: a convolution and a bidirectional GRU over the last `window` events up
    to each event (the prefix only)."""

    name = "cnn_bigru"

    def _build(self, mean: np.ndarray, std: np.ndarray) -> nn.Module:
        self._shape = (mean, std)
        return _CnnBiGRUNet(self.settings, mean, std)

    def params(self) -> dict[str, Any]:
        return super().params() | {"window": self.settings.window, "channels": self.settings.channels}

    def _forward_batches(self, data: _Arrays, rng: np.random.Generator | None):
        w = self.settings.window
        rows = np.arange(data.starts.size)
        if rng is not None:
            rows = rng.permutation(rows)
        for chunk in np.array_split(rows, max(1, int(np.ceil(rows.size / self.settings.batch_events)))):
            if chunk.size == 0:
                continue
            first = np.maximum(data.starts[chunk], chunk - w + 1)
            lengths = chunk - first + 1
            offsets = np.arange(w)
            valid = offsets[None, :] < lengths[:, None]
            idx = np.where(valid, first[:, None] + offsets[None, :], chunk[:, None])
            x = data.x[idx] * valid[:, :, None]
            yield chunk, self.net(torch.from_numpy(x).to(self.device), torch.from_numpy(lengths))
