"""Where local state lives, and the resources built from documented environment variables.

Settings are read when Definitions are assembled, never branched on: the same code runs on
the embedded defaults and on production storage, only the values differ.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["demand_home", "resources_from_env", "DEFAULT_DEMAND_HOME"]

DEFAULT_DEMAND_HOME = ".demand_home"


def demand_home() -> Path:
    """$DEMAND_HOME (default ./.demand_home), absolute."""
    return Path(os.environ.get("DEMAND_HOME", DEFAULT_DEMAND_HOME)).expanduser().resolve()


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def resources_from_env() -> dict:
    """The resources of the code location, configured from DEMAND_* variables (see README)."""
    from resources.contract_settings import ContractSettings
    from resources.data_source import DemandSourceResource
    from resources.delta_store import DeltaStore
    from resources.economics_settings import EconomicsSettings
    from resources.mlflow_tracking import MlflowTracking
    from resources.monitoring_settings import MonitoringSettings

    return {
        "source": DemandSourceResource(
            kind=_env("DEMAND_SOURCE", "synthetic"),
            csv_dir=os.environ.get("DEMAND_CSV_DIR") or None,
            transactions_file=os.environ.get("DEMAND_TRANSACTIONS_FILE") or None,
            transactions_market=_env("DEMAND_TRANSACTIONS_MARKET", "ALL"),
            m5_dir=os.environ.get("DEMAND_M5_DIR") or None,
            stockout_alpha=float(alpha) if (alpha := os.environ.get("DEMAND_STOCKOUT_ALPHA", "0.001").strip()) else None,
            seed=int(_env("DEMAND_SEED", "7")),
            n_countries=int(_env("DEMAND_COUNTRIES", "3")),
            n_products=int(_env("DEMAND_PRODUCTS", "50")),
            n_channels=int(_env("DEMAND_CHANNELS", "5")),
            origin=_env("DEMAND_ORIGIN", "2023-01-01"),
            chunk_rows=int(_env("DEMAND_CHUNK_ROWS", "4000000")),
            regime_change=os.environ.get("DEMAND_REGIME_CHANGE") or None,
            response_noise=float(_env("DEMAND_RESPONSE_NOISE", "0.2")),
        ),
        "store": DeltaStore(root_uri=os.environ.get("DEMAND_DELTA_URI") or None),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
            ui_url=_env("DEMAND_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
        ),
        "contract_settings": ContractSettings(
            reconcile_tolerance=float(_env("DEMAND_RECONCILE_TOLERANCE", "0.01")),
        ),
        "economics": EconomicsSettings(
            margin_rate=float(_env("DEMAND_MARGIN_RATE", "0.35")),
            holding_rate=float(_env("DEMAND_HOLDING_RATE", "0.10")),
            overrides_csv=os.environ.get("DEMAND_UNIT_ECONOMICS_CSV") or None,
        ),
        "monitoring": MonitoringSettings(
            drift_window_days=int(_env("DEMAND_DRIFT_WINDOW_DAYS", "28")),
            psi_threshold=float(_env("DEMAND_DRIFT_PSI", "0.25")),
            accuracy_ratio=float(_env("DEMAND_ACCURACY_RATIO", "1.3")),
            accuracy_bias=float(_env("DEMAND_ACCURACY_BIAS", "0.2")),
            retrain_after_days=int(_env("DEMAND_RETRAIN_AFTER_DAYS", "28")),
        ),
    }
