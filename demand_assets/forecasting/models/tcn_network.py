"""The TCN's network and loss (torch); `tcn.py` imports this module only when it builds a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from demand_assets.forecasting.panel import QUANTILES

if TYPE_CHECKING:
    from demand_assets.forecasting.models.tcn import TCNSettings

__all__ = ["MEAN_LOSS_WEIGHT", "TCNNetwork", "quantile_loss"]

MEAN_LOSS_WEIGHT = 0.25  # the squared error is on the scale of the windows (mean of inputs + 1)


class _CausalBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(nn.functional.pad(x, (self.pad, 0)))
        return x + self.act(y)


class TCNNetwork(nn.Module):
    def __init__(self, settings: TCNSettings) -> None:
        super().__init__()
        self.inp = nn.Conv1d(1, settings.channels, 1)
        blocks, dilation = [], 1
        while dilation < settings.input_len:
            blocks.append(_CausalBlock(settings.channels, settings.kernel_size, dilation))
            dilation *= 2
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(settings.channels, settings.horizon * 4)
        self.horizon = settings.horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.inp(x.unsqueeze(1)))[:, :, -1]
        raw = self.head(h).view(-1, self.horizon, 4)
        p10 = raw[..., 0]
        p50 = p10 + nn.functional.softplus(raw[..., 1])
        p90 = p50 + nn.functional.softplus(raw[..., 2])
        mean = nn.functional.softplus(raw[..., 3])
        return torch.stack([p10, p50, p90, mean], dim=-1)


def quantile_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pinball loss of the three quantiles plus the squared error of the mean head (whose
    minimiser is the conditional mean; for skewed counts it sits above the median)."""
    q = torch.tensor(QUANTILES, device=pred.device)
    diff = target.unsqueeze(-1) - pred[..., :3]
    pinball = torch.maximum(q * diff, (q - 1) * diff).mean()
    return pinball + MEAN_LOSS_WEIGHT * ((target - pred[..., 3]) ** 2).mean()
