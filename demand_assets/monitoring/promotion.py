"""Challenger against champion: is a retrained model good enough to take over?

The challenger is the best model family of the new backtest (lowest WAPE on the chosen regime
that also beats seasonal naive). It is compared with the incumbent champion on the same days:

- On the folds whose test days all lie after the incumbent's training window, the incumbent
  itself (the registered model, frozen) forecasts each fold from the same history the
  challenger's fold model had, and both are scored on the same days. Neither saw those days.
- If no fold lies after the incumbent's training window (retraining right after training),
  the incumbent's family, refitted on each fold in the same backtest, stands in for it.

Promotion needs a strictly lower WAPE, except that a challenger of the incumbent's own family
compared on the refitted stand-in (identical scores by construction) is promoted: it is the
same model trained on newer data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PromotionDecision", "decide_promotion"]


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    challenger: str | None
    incumbent: str | None
    challenger_wape: float | None
    incumbent_wape: float | None
    compared_on: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    *,
    challenger: str | None,
    challenger_reason: str,
    incumbent: str | None,
    challenger_wape: float | None,
    incumbent_wape: float | None,
    frozen_incumbent: bool,
    compared_on: str,
) -> PromotionDecision:
    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, challenger, incumbent, challenger_wape, incumbent_wape, compared_on, reason)

    if challenger is None:
        return decision(False, f"no challenger: {challenger_reason}; the champion stays")
    if incumbent is None:
        return decision(True, f"first champion: {challenger_reason}")
    if challenger_wape is None or incumbent_wape is None:
        return decision(False, f"cannot compare {challenger} with the champion {incumbent} on the same days; the champion stays")
    versus = f"{challenger} WAPE {challenger_wape:.4f} vs champion {incumbent} {incumbent_wape:.4f} on {compared_on}"
    if challenger_wape < incumbent_wape:
        return decision(True, f"promoted: {versus}")
    if challenger == incumbent and not frozen_incumbent:
        return decision(True, f"promoted: the champion's family retrained on newer data ({versus})")
    return decision(False, f"not promoted: {versus}")
