"""Monitoring: drift statistics and the retraining decision, free of Dagster."""

from demand_assets.monitoring.drift import DriftThresholds, TargetDrift, feature_drift, ks_statistic, mix_drift, psi, realised_wape, target_drift

__all__ = ["DriftThresholds", "TargetDrift", "feature_drift", "ks_statistic", "mix_drift", "psi", "realised_wape", "target_drift"]
