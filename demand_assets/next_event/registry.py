"""A fitted next-event model behind MLflow's generic interface, and scoring a day's sessions.

Input of `predict`: a pandas frame of events (event_type, product_id, price, event_time, and
user_session: the events of one session when absent), any order. Output: one row per session,
as of its newest event: user_session, P_VIEW, P_CART, P_REMOVE_FROM_CART, P_PURCHASE, P_END
(what comes next), P_PURCHASE_LATER (a purchase still to come in the session), HAS_CART and
AT_RISK (a cart, and P_PURCHASE_LATER below the model's threshold).
"""

from __future__ import annotations

import pandas as pd
import polars as pl
from mlflow.pyfunc import PythonModel

from demand_assets.next_event.sequences import SequenceReference, Sequences, session_events
from demand_assets.sources.events.world import EVENT_TYPES, NEXT_CLASSES

__all__ = ["NEXT_EVENT_REGISTERED_MODEL", "NextEventPyfunc", "PROBABILITY_COLUMNS", "score_sessions"]

NEXT_EVENT_REGISTERED_MODEL = "next_event"
PROBABILITY_COLUMNS = tuple(f"P_{c.upper()}" for c in NEXT_CLASSES)


class NextEventPyfunc(PythonModel):
    def __init__(self, model, reference: SequenceReference, model_name: str, threshold: float) -> None:
        self.model = model
        self.reference = reference.to_dict()
        self.model_name = model_name
        self.threshold = float(threshold)

    def _reference(self) -> SequenceReference:
        # Built once per loaded model, not per request (the service scores one session per call).
        if getattr(self, "_built", None) is None:
            self._built = SequenceReference.from_dict(self.reference)
        return self._built

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_built"}

    def sequences(self, events: pl.DataFrame) -> Sequences:
        return session_events(events, self._reference())

    def score(self, events: pl.DataFrame) -> tuple[Sequences, pl.DataFrame]:
        """(the events as sequences, every event's probabilities: PROBABILITY_COLUMNS and P_PURCHASE_LATER)."""
        sequences = self.sequences(events)
        pred = self.model.predict(sequences)
        probs = pl.DataFrame({name: pred.next[:, i] for i, name in enumerate(PROBABILITY_COLUMNS)} | {"P_PURCHASE_LATER": pred.purchase})
        return sequences, probs

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        events = pl.from_pandas(model_input)
        if "user_session" not in events.columns:
            events = events.with_columns(pl.lit("session").alias("user_session"))
        for column in ("user_id", "category_id", "brand"):
            if column not in events.columns:
                events = events.with_columns(pl.lit(None, dtype=pl.String).alias(column))
        events = events.with_columns(pl.col("event_time").cast(pl.Datetime("us")), pl.col("product_id").cast(pl.String))
        return score_sessions(self, events).to_pandas()


def score_sessions(model: NextEventPyfunc, events: pl.DataFrame) -> pl.DataFrame:
    """Each session as of its newest event (see the module's docstring)."""
    sequences, probs = model.score(events)
    frame = pl.concat([sequences.frame.select("user_session", "TYPE", "POSITION"), probs], how="horizontal")
    cart = EVENT_TYPES.index("cart")
    return (
        frame.with_columns((pl.col("TYPE") == cart).any().over("user_session").alias("HAS_CART"))
        .filter(pl.col("POSITION") == pl.col("POSITION").max().over("user_session"))
        .with_columns((pl.col("HAS_CART") & (pl.col("P_PURCHASE_LATER") < model.threshold)).alias("AT_RISK"))
        .select("user_session", pl.col("POSITION").alias("EVENTS") + 1, *PROBABILITY_COLUMNS, "P_PURCHASE_LATER", "HAS_CART", "AT_RISK")
        .sort("user_session")
    )
