"""The adversarial loss (targets hidden, one-sided label smoothing), critic accuracy, and the L1 weighting."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

# GAN mode -> (criterion on the critic's raw outputs, the output above which the critic says "real").
# bce: vanilla GAN, sigmoid + BCE on logits (pix2pix default), P(real) > 0.5 <=> logit > 0.
# lsgan: least squares (Mao et al. 2017), outputs regressed onto the targets, real if nearer 1 than 0.
GAN_MODES = {
    "bce": (nn.BCEWithLogitsLoss, 0.0),
    "lsgan": (nn.MSELoss, 0.5),
}


class RealFake(NamedTuple):
    """A critic statistic on the real and on the fake batch, and their mean."""

    real: torch.Tensor
    fake: torch.Tensor
    mean: torch.Tensor


class GANLoss(nn.Module):
    """Adversarial loss on the critic's (B,1,h,w) logits; callers say real or fake, never build targets.

    One-sided label smoothing (Salimans et al. 2016): the critic's target for real pairs is
    `smoothing` (e.g. 0.9), its target for fakes stays 0. Only the critic's real target is smoothed:
    the generator's adversarial target is always 1 (`loss(fake_logits, real=True)`), since smoothing
    exists to keep the critic from growing over-confident, and a target below 1 for the generator
    would only weaken the gradient that pushes its samples toward "real".
    """

    def __init__(self, mode: str = "bce", smoothing: float = 1.0):
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN mode {mode!r}; choose one of: {', '.join(GAN_MODES)}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing is the critic's real target, in (0, 1]; got {smoothing} (1.0 = none)")
        criterion, self.threshold = GAN_MODES[mode]
        self.criterion, self.mode, self.smoothing = criterion(), mode, smoothing

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        """Unsmoothed loss against target 1 (real) or 0 (fake): the generator's loss is `self(D(L, G(L)), True)`."""
        return self._loss(logits, 1.0 if real else 0.0)

    def critic(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> RealFake:
        """The critic's loss on real pairs (target `smoothing`) and on fakes (target 0); `.mean` is what D minimises."""
        real, fake = self._loss(real_logits, self.smoothing), self._loss(fake_logits, 0.0)
        return RealFake(real, fake, (real + fake) / 2)  # pix2pix halves D's loss to slow it relative to G

    def accuracy(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> RealFake:
        """Fraction of patch logits the critic gets right: real ones above the mode's threshold, fakes below."""
        real = (real_logits > self.threshold).float().mean()
        fake = (fake_logits < self.threshold).float().mean()
        return RealFake(real, fake, (real + fake) / 2)

    def _loss(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        return self.criterion(logits, torch.full_like(logits, target))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, smoothing={self.smoothing}"


# How the L1 term joins the generator's adversarial term; (adv, l1, weight) -> total.
L1_CONVENTIONS = {
    "additive": lambda adv, l1, weight: adv + weight * l1,  # pix2pix: weight = lambda = 100
    "convex": lambda adv, l1, weight: (1 - weight) * adv + weight * l1,  # Nazeri et al. 2018: weight = 0.99
}


def generator_loss(adv: torch.Tensor, l1: torch.Tensor, mode: str, weight: float) -> torch.Tensor:
    """The generator's total loss from its adversarial and L1 terms, in either lineage's convention.

    additive (pix2pix):                  G = adv + lambda * L1            (lambda = weight, 100)
    convex (CIFAR study, Nazeri et al.): G = (1 - w) * adv + w * L1       (w = weight in [0, 1], 0.99)

    They are the same objective up to a constant factor: (1 - w) * adv + w * L1
    = (1 - w) * (adv + lambda * L1) with lambda = w / (1 - w). So convex w = 0.99 is additive
    lambda = 99 (w = 0.985: lambda ~ 65.7) with the whole loss, hence every gradient, scaled by
    1 - w = 0.01. Adam's step m / (sqrt(v) + eps) is invariant to a gradient scale c except through
    eps: gradients c * g give exactly the steps of g with eps / c, i.e. eps 1e-8 acts as 1e-6 for
    c = 0.01, which only matters for weights whose gradient RMS is near 1e-6. The step size
    (learning rate) is unchanged; plain SGD, a coupled L2 weight decay or gradient clipping by norm
    would feel the factor, Adam(W) without them does not. Inversely lambda = 100 is w = 100/101.
    """
    if mode not in L1_CONVENTIONS:
        raise ValueError(f"unknown L1 convention {mode!r}; choose one of: {', '.join(L1_CONVENTIONS)}")
    if mode == "convex" and not 0.0 <= weight <= 1.0:
        raise ValueError(f"the convex L1 weight is in [0, 1] (got {weight}); for G = adv + {weight} * L1 use 'additive'")
    return L1_CONVENTIONS[mode](adv, l1, weight)
