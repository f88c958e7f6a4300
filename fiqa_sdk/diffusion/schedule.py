"""The DDPM noise schedule of DifFIQA and its DDIM sampler (x0-prediction network).

Index convention
----------------
Every time step here is a **0-based index** ``i`` into arrays of length ``T = 1000``, as in the
paper's eq. 2 (``alpha_bar_t = prod_{i=0..t} (1 - beta_i)``) and the official code:
``alpha_bar[i]`` is the signal level after ``i + 1`` noising steps, so ``alpha_bar[0]`` is already
slightly below 1. Training draws ``i`` from ``0 .. T'-1`` (``T' = 100`` levels, the paper's
"t in [1, T']" counted from 1), and the network is conditioned on ``i``.

Forward / backward at inference (DifFIQA, "t forward steps")
------------------------------------------------------------
The official implementation noises with ``q_sample(x, t)`` (level ``alpha_bar[t]``) and then
restores with DDIM over the time pairs of :func:`time_pairs` (``t - 1`` first): for ``t = 5``::

    (4, 3), (3, 2), (2, 1), (1, 0), (0, 0), (0, -1)

i.e. ``t + 1`` network evaluations. The first pair treats the sample, noised to level 5, as if it
were at level 4 (an off-by-one of the official code that we keep: at these tiny noise levels the
two differ by ~1e-4 in ``alpha_bar``). ``(0, 0)`` is a deterministic re-projection at level 0
(``sigma = 0``), and ``(0, -1)`` returns the network's x0 prediction itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InvalidArgumentError

T_DEFAULT = 1000


def cosine_alpha_bar(T: int = T_DEFAULT, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """``alpha_bar`` of the cosine schedule (Nichol & Dhariwal 2021), shape ``(T,)`` float64.

    ``f(u) = cos(((u / T + s) / (1 + s)) * pi / 2) ** 2``; ``beta_i = 1 - f(i + 1) / f(i)``
    clipped to ``[0, max_beta]``; ``alpha_bar[i] = prod_{j <= i} (1 - beta_j)``.
    """
    return np.cumprod(1.0 - cosine_betas(T, s, max_beta))


def cosine_betas(T: int = T_DEFAULT, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """``beta`` of the cosine schedule, shape ``(T,)`` float64 (see :func:`cosine_alpha_bar`)."""
    u = np.arange(T + 1, dtype=np.float64)
    f = np.cos(((u / T + s) / (1 + s)) * math.pi / 2) ** 2
    return np.clip(1.0 - f[1:] / f[:-1], 0.0, max_beta)


def degradation_weight(t: torch.Tensor | np.ndarray | float, T: int = T_DEFAULT):
    """Eq. 6 mixing weight ``a_t = sin(t / T * pi / 2)`` (0 at ``t = 0``, 1 at ``t = T``)."""
    if isinstance(t, torch.Tensor):
        return torch.sin(t.double() / T * (math.pi / 2)).float()
    return np.sin(np.asarray(t, dtype=np.float64) / T * (math.pi / 2))


def time_pairs(t: int) -> list[tuple[int, int]]:
    """DDIM ``(time, time_next)`` pairs that restore a sample noised with ``t`` forward steps.

    Official code: ``times = linspace(-1, t - 1, t + 2)`` truncated toward zero, reversed,
    consecutive pairs. For every ``t >= 1`` this is exactly
    ``(t-1, t-2), ..., (1, 0), (0, 0), (0, -1)``; ``t = 5`` gives
    ``[(4, 3), (3, 2), (2, 1), (1, 0), (0, 0), (0, -1)]``.
    """
    t = int(t)
    if t < 1:
        raise InvalidArgumentError(f"t (forward steps) must be >= 1, got {t}")
    times = list(range(t - 1, -1, -1)) + [0, -1]
    return list(zip(times[:-1], times[1:]))


def stochastic_steps(t: int, eta: float = 1.0) -> int:
    """How many pairs of :func:`time_pairs` draw fresh noise (``sigma > 0``)."""
    return sum(1 for a, b in time_pairs(t) if b >= 0 and a != b) if eta > 0 else 0


class Schedule:
    """Schedule tensors plus the forward (eq. 2) and DDIM backward operations.

    Parameters
    ----------
    T : int
        Number of diffusion steps (1000).
    s, max_beta : float
        Cosine-schedule offset and beta clip.
    """

    def __init__(self, T: int = T_DEFAULT, s: float = 0.008, max_beta: float = 0.999) -> None:
        self.T = int(T)
        ab = cosine_alpha_bar(self.T, s, max_beta)
        self.alpha_bar64 = ab
        self.alpha_bar = torch.from_numpy(ab).float()

    def _ab(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        ab = self.alpha_bar.to(like.device)[t.to(like.device)]
        return ab.reshape(-1, *([1] * (like.ndim - 1))) if ab.ndim else ab

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 2: ``sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise``.

        ``t`` is an int or a ``(N,)`` long tensor of 0-based indices; ``noise`` is like ``x0``.
        """
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor) -> torch.Tensor:
        """The noise implied by an x0 prediction: ``(x_t / sqrt(ab) - x0) / sqrt(1 / ab - 1)``."""
        ab = self._ab(t, x_t)
        return (x_t / ab.sqrt() - x0) / (1 / ab - 1).sqrt()

    def ddim_step(self, x_t: torch.Tensor, x0_pred: torch.Tensor, t: int, t_next: int,
                  eta: float = 1.0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM update from level ``t`` to ``t_next`` (``t_next < 0``: return ``x0_pred``).

        ``sigma = eta sqrt((1 - ab_t / ab_next)(1 - ab_next) / (1 - ab_t))``;
        ``x_next = sqrt(ab_next) x0 + sqrt(1 - ab_next - sigma^2) eps + sigma noise``.
        ``noise`` is needed when ``sigma > 0``.
        """
        if t_next < 0:
            return x0_pred
        eps = self.eps_from_x0(x_t, t, x0_pred)
        ab, ab_next = self.alpha_bar64[t], self.alpha_bar64[t_next]
        sigma = eta * math.sqrt(max((1 - ab / ab_next) * (1 - ab_next) / (1 - ab), 0.0))
        c = math.sqrt(max(1 - ab_next - sigma**2, 0.0))
        out = math.sqrt(ab_next) * x0_pred + c * eps
        if sigma > 0:
            if noise is None:
                raise InvalidArgumentError("ddim_step with sigma > 0 needs noise")
            out = out + sigma * noise
        return out

    @torch.no_grad()
    def restore(self, model, x_t: torch.Tensor, t: int, eta: float = 1.0,
                noises: list[torch.Tensor] | None = None, clip: bool = True) -> torch.Tensor:
        """Backward process over :func:`time_pairs` ``(t)`` with an x0-predicting ``model``.

        ``noises``: one tensor like ``x_t`` per stochastic pair (:func:`stochastic_steps`), in
        order; drawn from the global RNG when None. ``clip`` clamps x0 predictions to [-1, 1]
        (as the official sampler does).
        """
        x = x_t
        it = iter(noises) if noises is not None else None
        for time, time_next in time_pairs(t):
            tt = torch.full((x.shape[0],), time, dtype=torch.long, device=x.device)
            x0 = model(x, tt)
            if clip:
                x0 = x0.clamp(-1, 1)
            noise = None
            if time_next >= 0 and time != time_next and eta > 0:
                noise = next(it) if it is not None else torch.randn_like(x)
            x = self.ddim_step(x, x0, time, time_next, eta, noise)
        return x
