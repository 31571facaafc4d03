"""Data sources: where the raw domains come from (synthetic generator, CSV snapshots, transaction logs, M5 files).

Every source implements `DemandSource`; the Dagster resource in `resources.data_source` picks one
by configuration.
"""

from demand_assets.sources.base import Catalog, DemandSource, Domain, DomainNotProvided

__all__ = ["Catalog", "DemandSource", "Domain", "DomainNotProvided"]
