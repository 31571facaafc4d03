"""E-commerce event logs (views, carts, removals, purchases) as a source: the reader and its
rules (`reader.py`), the source (`source.py`) and a synthetic event world with known truth
(`world.py`)."""

from demand_assets.sources.events.reader import COUNTS, EventDays, EventLevel, daily_events, event_files
from demand_assets.sources.events.source import EventLogSource, promo_rule
from demand_assets.sources.events.world import EVENT_COLUMNS, EVENT_TYPES, INTENTS, NEXT_CLASSES, EventWorld, write_event_files

__all__ = [
    "COUNTS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "INTENTS",
    "NEXT_CLASSES",
    "EventDays",
    "EventLevel",
    "EventLogSource",
    "EventWorld",
    "daily_events",
    "event_files",
    "promo_rule",
    "write_event_files",
]
