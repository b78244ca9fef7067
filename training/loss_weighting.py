"""How the per-objective losses of one training step become one update: fixed weights, uncertainty
weighting, or GradNorm (chosen by ``MultiTaskConfig.loss_weighting``).

- ``fixed``: L = sum_i w_i L_i with the config's per-objective weights.
- ``uncertainty`` (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses
  for Scene Geometry and Semantics", CVPR 2018): one learned s_i = log sigma_i^2 per objective and
  L = sum_i exp(-s_i) L_i + s_i. Every objective here is a classification (binary or softmax cross
  entropy). The paper's eq. (10) for a softmax with temperature sigma^2 is
  1/sigma^2 L_i + log sigma_i, its eq. (7) for a Gaussian regression 1/(2 sigma^2) L_i + log sigma_i.
  We implement exp(-s_i) L_i + s_i = 1/sigma^2 L_i + log sigma^2, which is eq. (7) times 2 (the
  form of Kendall & Cipolla, "Geometric Loss Functions for Camera Pose Regression with Deep
  Learning", CVPR 2017, eq. 8, and of the authors' released code), and differs from eq. (10) only
  in weighting the regulariser by 1 instead of 1/2: the optimum is exp(-s_i) = 1 / L_i (eq. (10):
  1 / (2 L_i)), so the objectives' RELATIVE weights are the same and each weighted term sits at ~1
  instead of ~1/2, keeping the step size of the fixed-weight runs. s_i is unconstrained (the
  exp keeps the weight positive) and starts at 0, i.e. weight 1; it has no weight decay.
- ``gradnorm`` (Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
  Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018): learned weights w_i (start 1).
  Each step, G_i = ||grad_W w_i L_i|| on the shared weights W; the target is
  mean_j(G_j) * r_i^alpha with r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) (the relative inverse
  training rate; L_i(0) = the objective's loss on the first step it appears) held constant; the weights
  take a gradient step on sum_i |G_i - target_i| and are renormalised to sum to the number of
  objectives (clamped positive first). The paper picks W = the last shared layer. Our objectives share no
  single layer (each reads the shared embeddings and encoders through its own tower), so W is
  every parameter that at least two of the step's objectives reach, found from the per-objective gradients,
  which GradNorm computes anyway: the network's update is sum_i w_i grad L_i from those same
  gradients, at the cost of one backward pass per objective. An objective that shares no parameter with
  another in a step (the image head reads the CNN alone) has no G_i: it is left out of that
  step's balancing and its weight moves only through the renormalisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("fixed", "uncertainty", "gradnorm")
GRADNORM_MIN_WEIGHT = 1e-3  # weights are clamped here before renormalising, so none reaches 0 or below


class LossWeighting(nn.Module):
    """Combines per-objective losses {objective: scalar} into the loss to minimise; subclasses pick the rule."""

    def __init__(self, objectives: tuple[str, ...]) -> None:
        super().__init__()
        self.objectives = tuple(objectives)
        self.index = {objective: position for position, objective in enumerate(self.objectives)}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss to backpropagate for the objectives present in this step."""
        raise NotImplementedError

    def objective_weights(self) -> dict[str, float]:
        """The current multiplier of each objective's loss, for the logs."""
        raise NotImplementedError


class FixedWeighting(LossWeighting):
    """L = sum_i w_i L_i with fixed w_i."""

    def __init__(self, objectives: tuple[str, ...], weights: dict[str, float]) -> None:
        super().__init__(objectives)
        self.weights = {objective: float(weights.get(objective, 1.0)) for objective in self.objectives}

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the present objectives' losses."""
        return sum(self.weights[objective] * loss for objective, loss in losses.items())  # type: ignore[return-value]

    def objective_weights(self) -> dict[str, float]:
        """The fixed weights."""
        return dict(self.weights)


class UncertaintyWeighting(LossWeighting):
    """Kendall et al. 2018 homoscedastic uncertainty: L = sum_i exp(-s_i) L_i + s_i, s_i = log sigma_i^2 learned."""

    def __init__(self, objectives: tuple[str, ...]) -> None:
        super().__init__(objectives)
        self.log_variances = nn.Parameter(torch.zeros(len(self.objectives)))  # [n_objectives] s_i; 0 = weight 1

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum over present objectives of exp(-s_i) L_i + s_i."""
        total = torch.zeros((), device=self.log_variances.device)
        for objective, loss in losses.items():
            s = self.log_variances[self.index[objective]]
            total = total + torch.exp(-s) * loss + s
        return total

    def objective_weights(self) -> dict[str, float]:
        """exp(-s_i) per objective."""
        return {objective: math.exp(-float(self.log_variances[i].detach())) for objective, i in self.index.items()}

    def log_variance(self) -> dict[str, float]:
        """s_i = log sigma_i^2 per objective."""
        return {objective: float(self.log_variances[i].detach()) for objective, i in self.index.items()}


class GradNormWeighting(LossWeighting):
    """Chen et al. 2018 GradNorm: w_i learned so each objective's gradient norm on the shared weights
    tracks the mean norm times its relative inverse training rate to the power alpha."""

    def __init__(self, objectives: tuple[str, ...], alpha: float) -> None:
        super().__init__(objectives)
        self.alpha = alpha
        self.weights = nn.Parameter(torch.ones(len(self.objectives)))  # [n_objectives] w_i, sum = n_objectives
        self.register_buffer("initial_losses", torch.full((len(self.objectives),), math.nan))  # [n_objectives] L_i(0)

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_i w_i L_i with the weights held constant (what the network minimises)."""
        return sum(self.weights[self.index[objective]].detach() * loss for objective, loss in losses.items())  # type: ignore[return-value]

    def backward(self, losses: dict[str, torch.Tensor], parameters: list[nn.Parameter]) -> dict[str, float]:
        """Set ``.grad`` of ``parameters`` to sum_i w_i grad L_i and of the weights to the GradNorm
        gradient; returns G_i per balanced objective (for the logs)."""
        objectives = list(losses)
        per_task = [
            torch.autograd.grad(losses[objective], parameters, retain_graph=True, allow_unused=True) for objective in objectives
        ]  # objectives x params, None where a objective does not reach a parameter
        reach = [sum(grads[p] is not None for grads in per_task) for p in range(len(parameters))]
        shared = [p for p, count in enumerate(reach) if count >= 2]  # W: reached by two or more objectives

        # The network's gradient: the weighted sum of the per-objective gradients, weights held constant.
        for p, parameter in enumerate(parameters):
            total = None
            for objective, grads in zip(objectives, per_task, strict=True):
                if grads[p] is not None:
                    term = self.weights[self.index[objective]].detach() * grads[p]
                    total = term if total is None else total + term
            parameter.grad = total

        with torch.no_grad():
            for objective in objectives:
                i = self.index[objective]
                if math.isnan(float(self.initial_losses[i])):
                    self.initial_losses[i] = losses[objective].detach().float()
        norms = {}  # objective -> ||grad_W L_i|| (unweighted)
        for objective, grads in zip(objectives, per_task, strict=True):
            # A sparse gradient (the id tables) may list a row more than once: coalesce before squaring.
            squares = [
                (grads[p].coalesce().values() if grads[p].is_sparse else grads[p]).float().pow(2).sum()
                for p in shared if grads[p] is not None
            ]  # fmt: skip
            if squares:
                norms[objective] = torch.sqrt(torch.stack(squares).sum())
        self.weights.grad = torch.zeros_like(self.weights)
        if len(norms) < 2:  # nothing to balance this step
            return {}
        balanced = list(norms)
        index = torch.tensor([self.index[objective] for objective in balanced], device=self.weights.device)
        g = torch.stack([norms[objective] for objective in balanced]).detach()  # [k] gradient norms, constants
        weighted_norms = self.weights[index] * g  # [k] G_i = w_i * ||grad_W L_i||, linear in w_i
        ratios = torch.stack([losses[objective].detach().float() for objective in balanced]) / self.initial_losses[index]  # [k]
        relative_rate = ratios / ratios.mean()  # [k] r_i
        target = (weighted_norms.mean() * relative_rate.pow(self.alpha)).detach()  # [k], held constant (paper, sec. 3.2)
        gradnorm_loss = (weighted_norms - target).abs().sum()
        (self.weights.grad,) = torch.autograd.grad(gradnorm_loss, self.weights)
        return {objective: float(value) for objective, value in zip(balanced, weighted_norms.detach(), strict=True)}

    @torch.no_grad()
    def renormalize(self) -> None:
        """Clamp the weights positive and rescale them to sum to the number of objectives (after each step)."""
        self.weights.clamp_(min=GRADNORM_MIN_WEIGHT)
        self.weights.mul_(len(self.objectives) / self.weights.sum())

    def objective_weights(self) -> dict[str, float]:
        """w_i per objective."""
        return {objective: float(self.weights[i].detach()) for objective, i in self.index.items()}


def build_loss_weighting(
    method: str, objectives: tuple[str, ...], fixed_weights: dict[str, float], gradnorm_alpha: float
) -> LossWeighting:
    """The weighting ``method`` names ("fixed", "uncertainty" or "gradnorm") for ``objectives``."""
    if method == "fixed":
        return FixedWeighting(objectives, fixed_weights)
    if method == "uncertainty":
        return UncertaintyWeighting(objectives)
    if method == "gradnorm":
        return GradNormWeighting(objectives, gradnorm_alpha)
    raise ValueError(f"loss_weighting must be one of {METHODS}, not {method!r}")
