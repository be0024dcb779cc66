"""The experimental arms: each is one routing object that turns a batch into (gate, keep, w).

Per rollout i the adapter's quarantine block output is scaled by gate_i and the deployed
block's parameter gradient by keep_i (see `evil_moe.adapter`). An arm is a `Routing`:

- `evil_moe`: the method. A learned `CosineRouter` seeded from `v_act` gives w; gate = w,
  keep = 1 - w; the pin loss on the contrastive pairs trains the router every step.
- `random_router`: the placebo. The same, with the router's direction a random unit vector.
- `route_a`: the predecessor's fixed gate. The score of the pooled activations against `v_act`
  (mean over modules of the cosine, as the router's), compared with running quantiles of past scores: below the keep quantile -> keep
  (gate 0, keep 1), between -> both (gate 1, keep 1), above the route quantile -> route
  (gate 1, keep 0). Nothing is learned.
- `none`: no routing (gate 1, keep 1): both blocks train on everything.
- `oracle`: DIAGNOSTIC, USES GROUND-TRUTH LABELS. Exploited rollouts are routed (gate 1,
  keep 0), the rest kept (gate 0, keep 1). An upper bound, never the method.

Only a routing with `uses_oracle = True` is ever given the grades' labels; every other arm
sees the pooled activations and the rewards and nothing else of the grade.

`RoutingWeights.w` is the share of each rollout's gradient withheld from the deployed block,
1 - keep, for logging (routing precision and recall at w > 0.5 against ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

ROUTE_A_WINDOW = 1024  # route_a: number of most recent scores its running quantiles are taken over


@dataclass(frozen=True)
class Labels:
    """Ground-truth labels of a batch of rollouts (from the grades). Only the oracle reads them."""

    gt_correct: Sequence[bool]
    channel: Sequence[bool]
    exploited: Sequence[bool]
    mechanism: Sequence[str | None]


@dataclass(frozen=True)
class RoutingWeights:
    gate: Tensor  # (N,) quarantine output scale; may carry the router's graph
    keep: Tensor  # (N,) deployed parameter-gradient scale, detached
    w: Tensor  # (N,) 1 - keep, detached, for logging


class Routing(Protocol):
    name: str
    uses_oracle: bool  # True only for the diagnostic oracle arm: it alone receives labels
    uses_pairs: bool  # True if aux_loss needs the pooled contrastive pairs each step

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights: ...
    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None: ...
    def parameters(self) -> list[nn.Parameter]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def _weights(gate: Tensor, keep: Tensor) -> RoutingWeights:
    keep = keep.detach()
    return RoutingWeights(gate=gate, keep=keep, w=1.0 - keep)


class RouterRouting:
    """evil_moe and random_router: gate = w = router(pooled), keep = 1 - w, pin loss on pairs."""

    uses_oracle = False
    uses_pairs = True

    def __init__(self, name: str, router: nn.Module, pin_loss: Callable[..., Tensor]):
        self.name, self.router, self._pin_loss = name, router, pin_loss

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        w = self.router(pooled)  # (N,)
        return _weights(w, 1.0 - w)

    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None:
        if pair_pooled is None:
            raise ValueError(f"{self.name}: the pin loss needs the pooled contrastive pairs")
        hack, clean = pair_pooled  # (P, M, r), (P, M, r)
        return self._pin_loss(self.router, hack, clean)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.router.parameters())

    def state_dict(self) -> dict:
        return {}  # the router's own tensors are saved with the adapter checkpoint

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name}: unexpected routing state keys {sorted(state)}")


class RouteARouting:
    """route_a: fixed three-way gate from the v_act score against running quantiles."""

    name = "route_a"
    uses_oracle = False
    uses_pairs = False

    def __init__(self, v_act: Tensor, keep_quantile: float, route_quantile: float,
                 window: int = ROUTE_A_WINDOW, gather: Callable[[Tensor], Tensor] | None = None):
        if not 0 < keep_quantile <= route_quantile < 1:
            raise ValueError(f"route_a needs 0 < keep_quantile <= route_quantile < 1, got "
                             f"{keep_quantile}, {route_quantile}")
        self.v_act = v_act.detach()  # (M, r)
        self.keep_q, self.route_q, self.window = keep_quantile, route_quantile, window
        self.gather = gather or (lambda t: t)  # all ranks' scores, in rank order (identity: 1 process)
        self.history = torch.zeros(0)  # (<= window,) most recent scores, oldest first

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        from evil_moe.router import mean_cosine

        scores = mean_cosine(pooled.float(), self.v_act.float())  # (N,)
        everyone = self.gather(scores.detach().cpu())  # (N_global,)
        self.history = torch.cat([self.history, everyone])[-self.window:]  # (<= window,)
        lo = torch.quantile(self.history.double(), self.keep_q).item()
        hi = torch.quantile(self.history.double(), self.route_q).item()
        s = scores.detach().cpu().double()  # (N,)
        gate = (s >= lo).to(pooled.dtype)  # (N,) 0: keep only
        keep = (s <= hi).to(pooled.dtype)  # (N,) 0: route only
        return _weights(gate.to(pooled.device), keep.to(pooled.device))

    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None:
        return None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {"history": self.history.clone(), "v_act": self.v_act.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"].clone()
        self.v_act = state["v_act"].to(self.v_act.device)


class NoRouting:
    """none: both blocks train on every rollout (gate 1, keep 1)."""

    name = "none"
    uses_oracle = False
    uses_pairs = False

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        ones = torch.ones(pooled.shape[0], dtype=pooled.dtype, device=pooled.device)  # (N,)
        return _weights(ones, ones)

    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None:
        return None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"none: unexpected routing state keys {sorted(state)}")


class OracleRouting(NoRouting):
    """oracle (DIAGNOSTIC, USES GROUND-TRUTH LABELS): exploited -> (gate 1, keep 0), else (0, 1)."""

    name = "oracle"
    uses_oracle = True

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        if labels is None:
            raise ValueError("oracle routing needs the ground-truth labels")
        hack = torch.tensor([bool(x) for x in labels.exploited], dtype=pooled.dtype,
                            device=pooled.device)  # (N,)
        if hack.shape[0] != pooled.shape[0]:
            raise ValueError(f"oracle: {hack.shape[0]} labels for {pooled.shape[0]} rollouts")
        return _weights(hack, 1.0 - hack)


def make_routing(cfg, adapter, pair_pooled: tuple[Tensor, Tensor] | None,
                 gather: Callable[[Tensor], Tensor] | None = None) -> Routing:
    """The routing object of arm `cfg.run.arm`.

    `pair_pooled` is (hack, clean), each (P, M, r): the pooled deployed-bottleneck activations of
    the contrastive pairs at the adapter's initial values; `v_act` is computed from them. `gather`
    all-gathers a (n,) tensor across processes (route_a's running quantile); None for one process.
    """
    from evil_moe.pairs import compute_v_act

    arm = cfg.run.arm
    if arm == "none":
        return NoRouting()
    if arm == "oracle":
        return OracleRouting()
    if pair_pooled is None:
        raise ValueError(f"arm {arm!r} needs the pooled contrastive pairs (v_act)")
    v_act = compute_v_act(*pair_pooled)  # (M, r)
    if arm == "route_a":
        return RouteARouting(v_act, cfg.router.route_a_keep_quantile, cfg.router.route_a_quantile,
                             gather=gather)
    if arm in ("evil_moe", "random_router"):
        from evil_moe.router import CosineRouter, pin_loss

        hack, clean = pair_pooled
        if arm == "evil_moe":
            router = CosineRouter.from_v_act(v_act, hack, clean)
        else:
            router = CosineRouter.random_direction(v_act.shape[0], v_act.shape[1], cfg.router.random_seed,
                                                   hack, clean)
        return RouterRouting(arm, router.to(hack.device), pin_loss)
    raise ValueError(f"unknown arm {arm!r}")
