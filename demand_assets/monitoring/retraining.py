"""When to retrain: the retraining sensor's decision, free of Dagster.

Three triggers; at most one retraining request per training generation, whichever trigger
comes first (a generation is identified by the last day of the window the models were last
trained on, `trained_until`):

- drift: a drift check (feature, target or product-mix drift on the training dataset, or
  accuracy drift of the forecasts) has a failed evaluation the sensor has not handled yet;
- age: at least `retrain_after_days` newer days of training data exist than the last training
  used;
- initial: nothing has been trained yet and training data exists.

The run key names the generation (`retrain:after-<trained_until>`) and the cursor remembers the
generation it last requested for, so the same generation never launches two retraining runs,
however often the sensor ticks and whatever fires; once retraining finishes, `trained_until`
moves and the new generation may trigger again.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

__all__ = ["CheckSignal", "RetrainingCursor", "RetrainingRequest", "decide_retraining"]


@dataclass(frozen=True)
class CheckSignal:
    """The latest completed evaluation of one drift check."""

    check: str  # "asset:check"
    record_id: int  # increases with every evaluation: the cursor's bookmark
    passed: bool
    description: str = ""


@dataclass
class RetrainingCursor:
    handled: dict[str, int] = field(default_factory=dict)  # check -> newest record id seen
    requested_for: str | None = None  # the generation a retraining was last requested for
    children: dict[str, RetrainingCursor] = field(default_factory=dict)  # other models' cursors (next_event)

    @classmethod
    def parse(cls, text: str | None) -> RetrainingCursor:
        if not text:
            return cls()
        return cls._from(json.loads(text))

    @classmethod
    def _from(cls, data: dict) -> RetrainingCursor:
        children = {k: cls._from(v) for k, v in data.get("children", {}).items()}
        return cls(handled=data.get("handled", {}), requested_for=data.get("requested_for"), children=children)

    def nested(self, name: str) -> RetrainingCursor:
        """The cursor of another model's retraining, kept inside this one."""
        return self.children.get(name, RetrainingCursor())

    def _data(self) -> dict:
        data: dict = {"handled": self.handled, "requested_for": self.requested_for}
        if self.children:
            data["children"] = {k: v._data() for k, v in self.children.items()}
        return data

    def serialize(self) -> str:
        return json.dumps(self._data(), sort_keys=True)


@dataclass(frozen=True)
class RetrainingRequest:
    trigger: str  # drift | age | initial
    run_key: str
    reason: str


def decide_retraining(
    signals: list[CheckSignal],
    cursor: RetrainingCursor,
    *,
    trained_until: dt.date | None,
    newest_day: dt.date | None,
    retrain_after_days: int,
) -> tuple[RetrainingRequest | None, RetrainingCursor]:
    """The request to make (or None) and the advanced cursor."""
    fresh = [s for s in signals if s.record_id > cursor.handled.get(s.check, -1)]
    handled = cursor.handled | {s.check: s.record_id for s in fresh}
    generation = trained_until.isoformat() if trained_until else "never"
    run_key = f"retrain:after-{generation}"
    quiet = RetrainingCursor(handled=handled, requested_for=cursor.requested_for, children=dict(cursor.children))
    if newest_day is None:
        return None, quiet  # no training data yet: nothing to train on
    if cursor.requested_for == generation:
        return None, quiet  # already requested for this generation; wait for it to finish
    requested = RetrainingCursor(handled=handled, requested_for=generation, children=dict(cursor.children))
    if trained_until is None:
        return RetrainingRequest("initial", run_key, f"no model trained yet; training data up to {newest_day}"), requested
    failed = [s for s in fresh if not s.passed]
    if failed:
        names = ", ".join(s.check for s in failed)
        detail = "; ".join(f"{s.check}: {s.description}" for s in failed if s.description)
        return RetrainingRequest("drift", run_key, f"drift check(s) failed: {names}" + (f" ({detail})" if detail else "")), requested
    age = (newest_day - trained_until).days
    if age >= retrain_after_days:
        return RetrainingRequest(
            "age", run_key, f"{age} days of data newer than the last training (up to {trained_until}); threshold {retrain_after_days}"
        ), requested
    return None, quiet
