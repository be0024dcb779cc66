"""The rank-one cosine router and the pin loss.

With two experts a softmax router is the sigmoid of one direction, so the router is rank one:

    score_i = mean_m cos(pooled[i, m], u[m])        pooled: (B, M, r) detached pooled activations
    w_i     = sigmoid(scale * (score_i - bias))     w: (B,), the weight of rollout i's quarantine route

u (M, r), scale and bias are learnable. The router reads detached pooled activations, so its
gradient arrives only through w (from the training loss) and through the pin loss; it never
sends gradient into the adapter or the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_TARGET_W = 0.9  # initial w on the mean hack-side score (1 - this on the mean clean side)
MIN_HALF_GAP = 0.05  # floor on half the hack-clean score gap when setting the initial scale
SOURCES = ("v_act", "random", "oracle", "loaded")


def mean_cosine(pooled: Tensor, direction: Tensor) -> Tensor:
    """(B, M, r), (M, r) -> (B,): mean over modules of cos(pooled[:, m], direction[m])."""
    if pooled.dim() != 3 or pooled.shape[1:] != direction.shape:
        raise ValueError(f"pooled {tuple(pooled.shape)} does not match direction {tuple(direction.shape)} as (B, M, r)")
    return F.cosine_similarity(pooled, direction.unsqueeze(0), dim=-1).mean(dim=-1)  # (B,)


def separating_init(direction: Tensor, hack: Tensor, clean: Tensor,
                    target_w: float = DEFAULT_TARGET_W, min_half_gap: float = MIN_HALF_GAP) -> tuple[float, float]:
    """(scale, bias) from pair scores: bias is the midpoint of the mean hack and mean clean scores;
    scale = logit(target_w) / max(half_gap, min_half_gap), so a rollout scoring the mean hack score
    gets w = target_w and one scoring the mean clean score gets 1 - target_w. The floor keeps the
    scale finite and positive for a direction that does not separate the pairs (the placebo)."""
    with torch.no_grad():
        mh, mc = mean_cosine(hack, direction).mean().item(), mean_cosine(clean, direction).mean().item()
    half_gap = (mh - mc) / 2
    scale = math.log(target_w / (1 - target_w)) / max(half_gap, min_half_gap)
    return scale, (mh + mc) / 2


def unit_rows(v: Tensor, what: str) -> Tensor:
    """Normalise each row of (M, r); raises if a row is zero or non-finite."""
    norms = v.norm(dim=-1, keepdim=True)  # (M, 1)
    if not bool(torch.isfinite(v).all()) or bool((norms == 0).any()):
        raise ValueError(f"{what}: a module's direction is zero or non-finite")
    return v / norms


class CosineRouter(nn.Module):
    """pooled (B, M, r) -> w (B,) in (0, 1). `source` records how the direction was chosen."""

    def __init__(self, direction: Tensor, scale: float, bias: float, source: str):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.u = nn.Parameter(direction.detach().clone().float())  # (M, r)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.source = source
        self._last: Tensor | None = None

    def score(self, pooled: Tensor) -> Tensor:
        return mean_cosine(pooled.to(self.u.dtype), self.u)  # (B,)

    def logits(self, pooled: Tensor) -> Tensor:
        """scale * (score - bias), (B,); does not update `last_weights`."""
        return self.scale * (self.score(pooled) - self.bias)  # (B,)

    def forward(self, pooled: Tensor) -> Tensor:
        w = torch.sigmoid(self.logits(pooled))  # (B,)
        self._last = w.detach()
        return w

    @property
    def last_weights(self) -> Tensor | None:
        """Detached w of the latest forward (None before the first), for logging."""
        return self._last

    @classmethod
    def from_v_act(cls, v_act: Tensor, hack: Tensor, clean: Tensor, target_w: float = DEFAULT_TARGET_W):
        """The method: direction v_act (M, r); scale and bias set by `separating_init` on the
        pooled pair activations hack, clean (P, M, r)."""
        direction = unit_rows(v_act, "v_act")
        scale, bias = separating_init(direction, hack, clean, target_w)
        return cls(direction, scale, bias, "v_act")

    @classmethod
    def random_direction(cls, num_modules: int, rank: int, seed: int, hack: Tensor, clean: Tensor,
                         target_w: float = DEFAULT_TARGET_W):
        """The placebo: a seeded uniformly random unit direction per module, initialised like the
        method (same `separating_init`, so only the direction differs)."""
        g = torch.Generator().manual_seed(seed)
        direction = unit_rows(torch.randn(num_modules, rank, generator=g), "random direction")
        scale, bias = separating_init(direction, hack, clean, target_w)
        return cls(direction, scale, bias, "random")

    @classmethod
    def from_oracle_rollouts(cls, pooled: Tensor, is_hack: Tensor, target_w: float = DEFAULT_TARGET_W):
        """DIAGNOSTIC UPPER BOUND ONLY: USES GROUND-TRUTH LABELS of training rollouts.

        Direction = per-module unit (mean pooled of labelled hacks - mean of the rest); scale and
        bias from the same labelled rollouts. Never the method (oracle-free rule)."""
        is_hack = is_hack.bool()
        if is_hack.dim() != 1 or is_hack.shape[0] != pooled.shape[0]:
            raise ValueError(f"is_hack {tuple(is_hack.shape)} must be (N,) matching pooled {tuple(pooled.shape)}")
        if bool(is_hack.all()) or not bool(is_hack.any()):
            raise ValueError("oracle direction needs at least one hack and one non-hack rollout")
        hack, clean = pooled[is_hack], pooled[~is_hack]  # (N_h, M, r), (N_c, M, r)
        direction = unit_rows(hack.mean(0) - clean.mean(0), "oracle direction")
        scale, bias = separating_init(direction, hack, clean, target_w)
        return cls(direction, scale, bias, "oracle")


def pin_loss(router: CosineRouter, pooled_hack: Tensor, pooled_clean: Tensor) -> Tensor:
    """Binary cross-entropy pushing w to 1 on hack sides and to 0 on clean sides of the pairs,
    mean over the 2P sides. Pair activations are pooled under no_grad (detached), so this loss
    trains the router only."""
    if pooled_hack.shape != pooled_clean.shape:
        raise ValueError(f"hack {tuple(pooled_hack.shape)} and clean {tuple(pooled_clean.shape)} differ")
    logits = router.logits(torch.cat([pooled_hack.detach(), pooled_clean.detach()]))  # (2P,)
    target = torch.cat([torch.ones(len(pooled_hack)), torch.zeros(len(pooled_clean))]).to(logits)  # (2P,)
    return F.binary_cross_entropy_with_logits(logits, target)
