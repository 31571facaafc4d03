"""Scores of next-event and purchase predictions, and the plots a person reads them from.

Next event (`NEXT_CLASSES`, the predicted class is the most probable one): accuracy, macro-F1,
recall and PR-AUC (average precision, one class against the rest) per class, log loss, and the
expected calibration error of the top class (ECE, 15 equal-width bins of confidence).
Purchase still to come after the session's first k events: ROC-AUC, PR-AUC, log loss and ECE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, log_loss, recall_score, roc_auc_score

from demand_assets.sources.events.world import NEXT_CLASSES

__all__ = [
    "PURCHASE_PREFIXES",
    "Prediction",
    "calibration_error",
    "confusion_figure",
    "next_event_scores",
    "purchase_scores",
    "reliability_figure",
    "reliability_table",
]

PURCHASE_PREFIXES = (1, 3, 5)  # purchase scored after a session's first k events
BINS = 15
_EPS = 1e-7


@dataclass(frozen=True)
class Prediction:
    """Per event: probabilities of each next class (n, len(NEXT_CLASSES)), and of a purchase
    still to come in the session (n,)."""

    next: np.ndarray
    purchase: np.ndarray


def _clean(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> dict[str, np.ndarray]:
    """Per equal-width bin of confidence: rows, mean confidence, observed frequency."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    rows = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / rows
        observed = np.bincount(which, correct, minlength=bins) / rows
    return {"rows": rows, "confidence": mean_conf, "observed": observed}


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the rows-weighted mean |observed - confidence| over bins."""
    table = reliability_table(confidence, correct, bins)
    used = table["rows"] > 0
    if not used.any():
        return float("nan")
    gap = np.abs(table["observed"][used] - table["confidence"][used])
    return float((gap * table["rows"][used]).sum() / table["rows"][used].sum())


def next_event_scores(probs: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Scores of next-event probabilities against the classes that followed."""
    p = _clean(probs)
    y = np.asarray(actual, dtype=int)
    labels = list(range(len(NEXT_CLASSES)))
    predicted = p.argmax(axis=1)
    scores = {
        "accuracy": float((predicted == y).mean()),
        "macro_f1": float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, p, labels=labels)),
        "ece": calibration_error(p.max(axis=1), predicted == y),
    }
    recalls = recall_score(y, predicted, labels=labels, average=None, zero_division=0)
    for i, name in enumerate(NEXT_CLASSES):
        scores[f"recall_{name}"] = float(recalls[i])
        positive = y == i
        scores[f"pr_auc_{name}"] = float(average_precision_score(positive, p[:, i])) if positive.any() else float("nan")
    return scores


def purchase_scores(prob: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Scores of P(a purchase still to come) against what the sessions did."""
    y = np.asarray(actual, dtype=bool)
    p = np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS)
    both = 0 < y.sum() < y.size
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "ece": calibration_error(p, y),
        "base_rate": float(y.mean()) if y.size else float("nan"),
    }


def confusion_figure(probs: np.ndarray, actual: np.ndarray, title: str):
    """A confusion matrix (rows: what followed; columns: predicted), normalised by row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(range(len(NEXT_CLASSES)))
    matrix = confusion_matrix(actual, _clean(probs).argmax(axis=1), labels=labels).astype(float)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(labels, [c.replace("remove_from_cart", "remove") for c in NEXT_CLASSES], rotation=30)
    ax.set_yticks(labels, [c.replace("remove_from_cart", "remove") for c in NEXT_CLASSES])
    for i in labels:
        for j in labels:
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted next event")
    ax.set_ylabel("what followed")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the row")
    fig.tight_layout()
    return fig


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """Reliability diagram: per model, observed frequency against confidence (`curves`: name ->
    (confidence, correct)); the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, (confidence, correct) in curves.items():
        table = reliability_table(confidence, correct)
        used = table["rows"] >= 20
        ece = calibration_error(confidence, correct)
        ax.plot(table["confidence"][used], table["observed"][used], marker="o", markersize=3, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
