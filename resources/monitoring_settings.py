"""Thresholds of the drift checks and of the retraining sensor."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from demand_assets.monitoring.drift import DriftThresholds

__all__ = ["MonitoringSettings"]


class MonitoringSettings(dg.ConfigurableResource):
    drift_window_days: int = Field(
        default=28,
        ge=7,
        description="the newest days compared with the champion's training window (whole weeks avoid weekday bias)",
    )
    psi_threshold: float = Field(default=0.25, gt=0, description="a feature drifts above this PSI (and KS)")
    ks_threshold: float = Field(default=0.2, gt=0, le=1, description="KS statistic a drifting feature must also exceed")
    max_drifted_features: int = Field(default=0, ge=0, description="the feature-drift check fails when more features than this drift")
    target_psi: float = Field(default=0.25, gt=0, description="PSI of series-normalised in-stock demand above which the target drifted")
    target_level_change: float = Field(
        default=0.25, gt=0, description="change of mean in-stock demand (either way, in log terms) above which the target drifted"
    )
    mix_psi: float = Field(default=0.25, gt=0, description="PSI of products' demand shares above which the product mix drifted")
    accuracy_ratio: float = Field(default=1.3, gt=1, description="realised WAPE / champion backtest WAPE above this is accuracy drift")
    accuracy_bias: float = Field(default=0.2, gt=0, description="a realised bias of the forecasts beyond +/- this share of demand is accuracy drift")
    retrain_after_days: int = Field(default=28, ge=1, description="retrain once this many newer days exist than the last training used")
    reference_rows: int = Field(default=50_000, ge=1000, description="rows sampled from the champion's training window as the drift reference")
    next_event_log_loss_ratio: float = Field(
        default=1.15, gt=1, description="next-event drift: a day's realised log loss / the champion's test log loss above this"
    )
    next_event_ece: float = Field(default=0.05, gt=0, lt=1, description="next-event drift: a day's realised expected calibration error above this")

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(
            psi=self.psi_threshold,
            ks=self.ks_threshold,
            max_drifted_features=self.max_drifted_features,
            target_psi=self.target_psi,
            target_level_change=self.target_level_change,
            mix_psi=self.mix_psi,
            accuracy_ratio=self.accuracy_ratio,
            accuracy_bias=self.accuracy_bias,
        )
