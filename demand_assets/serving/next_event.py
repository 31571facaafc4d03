"""POST /next-event: a session's recent events in, what comes next out (issue 21, point 3).

The model is the registry's `next_event@champion` (next_event_model), loaded when the service
starts. The body is a JSON list of a session's events, oldest first; the answer is, as of the
newest event, the probability of each next event type (or of the session's end), of a purchase
still to come in the session, and the at-risk flag (a cart, no purchase yet, and that
probability below the champion's threshold), with the model's name and version.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

import polars as pl
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, field_validator, model_validator

from contracts.registry import PLAUSIBLE_UPPER_BOUNDS
from demand_assets.next_event.registry import NEXT_EVENT_REGISTERED_MODEL, PROBABILITY_COLUMNS, NextEventPyfunc, score_sessions
from demand_assets.sources.events.world import NEXT_CLASSES

__all__ = ["MAX_EVENTS", "LoadedNextEvent", "add_next_event_route", "load_next_event_champion"]

log = logging.getLogger(__name__)
MAX_EVENTS = 200  # a session's events per request (the generated world caps sessions at 80)


@dataclass(frozen=True)
class LoadedNextEvent:
    name: str
    version: str
    pyfunc: NextEventPyfunc


class SessionEvent(BaseModel):
    event_type: Literal["view", "cart", "remove_from_cart", "purchase"]
    product_id: str = Field(min_length=1, max_length=64, description="the product the event is about")
    price: float = Field(ge=0, le=PLAUSIBLE_UPPER_BOUNDS["PRICE"], allow_inf_nan=False, description="the product's price at the event")
    event_time: dt.datetime = Field(description="ISO 8601; a time without a zone is read as UTC")

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


class NextEventRequest(BaseModel):
    events: list[SessionEvent] = Field(min_length=1, max_length=MAX_EVENTS, description="one session's events, oldest first")

    @model_validator(mode="after")
    def _in_order(self) -> NextEventRequest:
        for i in range(1, len(self.events)):
            if self.events[i].event_time < self.events[i - 1].event_time:
                raise ValueError(
                    f"rule 'event times are in order (oldest first)': event {i} at {self.events[i].event_time.isoformat()} "
                    f"is before event {i - 1} at {self.events[i - 1].event_time.isoformat()}"
                )
        return self


class NextEventResponse(BaseModel):
    model: str
    model_version: str
    events: int = Field(description="events read")
    next_event: dict[str, float] = Field(description=f"probability of each of {', '.join(NEXT_CLASSES)} coming next")
    most_likely: str
    p_purchase: float = Field(description="probability of a purchase still to come in the session")
    has_cart: bool
    at_risk: bool = Field(description="a cart, no purchase yet, and p_purchase below the threshold")
    threshold: float


def load_next_event_champion(tracking) -> LoadedNextEvent | None:
    registry = tracking.for_model(NEXT_EVENT_REGISTERED_MODEL)
    version = registry.champion_version()
    if version is None:
        log.warning("no champion of %s: POST /next-event answers 503 until next_event_model runs", NEXT_EVENT_REGISTERED_MODEL)
        return None
    pyfunc = registry.load(version).unwrap_python_model()
    log.info("serving %s version %s (%s) for next events", NEXT_EVENT_REGISTERED_MODEL, version, pyfunc.model_name)
    return LoadedNextEvent(name=f"{NEXT_EVENT_REGISTERED_MODEL}:{pyfunc.model_name}", version=version, pyfunc=pyfunc)


def add_next_event_route(app: FastAPI, loaded: dict[str, LoadedNextEvent]) -> None:
    """POST /next-event on `app`, answered by `loaded["next_event"]` (filled at start-up)."""

    @app.post(
        "/next-event",
        response_model=NextEventResponse,
        responses={
            422: {"description": "an unknown event type, unsorted times, an empty or too long list"},
            503: {"description": "no next_event champion yet"},
        },
    )
    def next_event(request: NextEventRequest) -> NextEventResponse:
        model = loaded.get("next_event")
        if model is None:
            raise HTTPException(503, f"no '{NEXT_EVENT_REGISTERED_MODEL}' champion is registered: materialize next_event_model (DEMAND_SOURCE=events) first")
        events = pl.DataFrame(
            {
                "event_time": [e.event_time for e in request.events],
                "event_type": [e.event_type for e in request.events],
                "product_id": [e.product_id for e in request.events],
                "price": [e.price for e in request.events],
                "user_session": ["request"] * len(request.events),
                "user_id": [None] * len(request.events),
            },
            schema_overrides={"event_time": pl.Datetime("us"), "user_id": pl.String},
        )
        row = score_sessions(model.pyfunc, events).row(0, named=True)
        probabilities = {name: round(float(row[column]), 6) for name, column in zip(NEXT_CLASSES, PROBABILITY_COLUMNS, strict=True)}
        bought = any(e.event_type == "purchase" for e in request.events)
        return NextEventResponse(
            model=model.name,
            model_version=model.version,
            events=int(row["EVENTS"]),
            next_event=probabilities,
            most_likely=max(probabilities, key=probabilities.__getitem__),
            p_purchase=round(float(row["P_PURCHASE_LATER"]), 6),
            has_cart=bool(row["HAS_CART"]),
            at_risk=bool(row["AT_RISK"]) and not bought,
            threshold=round(model.pyfunc.threshold, 6),
        )
