"""The experimental arms: each is one routing object that turns a batch into (gate, keep, w).

Per rollout i the adapter's quarantine block output is scaled by gate_i and the deployed
block's parameter gradient by keep_i (see `evil_moe.adapter`). An arm is a `Routing`:

- `evil_moe`: the method. A learned `CosineRouter` seeded from `v_act` gives w; gate = w,
  keep = 1 - w; GRPO reaches the router through w and the pin loss on the contrastive pairs
  trains it every step.
- `random_init_router`: the same learned router and pin loss, seeded from a random direction.
  It tests the seeding: the pin loss pulls it toward the pairs' direction within steps.
- `placebo`: a fixed random direction, nothing learned, no pin loss, no gradient to the router.
  The control for "any routing at all, with no hack signal".
- `route_a`: the predecessor's fixed gate (wassname/vGROUT_pub, routeA), with its settings.
  Score = raw dot product of the flattened pooled activations, read on the deployed-only
  forward (quarantine ablated), with `v_act` (unit rows per module). The pooled activations of
  every rollout go into a buffer of `route_a_buffer` (8192; the oldest dropped only when full)
  that is re-scored against the current `v_act` at every cut; thresholds are the
  `route_a_tail_q` and 1 - `route_a_tail_q` quantiles of those scores, each weighted by
  0.5 ** (age / `route_a_halflife`) (age in rollouts: 1 for the newest); no warm-up. Score <= low
  cut: keep (gate 0, keep 1); between: both (1, 1); >= high cut: route (1, 0). Rollouts enter
  the buffer one prompt group at a time, each group cut against the buffer that includes it,
  as the predecessor's loop did; `v_act` is re-extracted from the pairs on the deployed forward
  every `route_a_refresh_every` steps (`end_step`). Nothing is trained.
- `none`: no routing (gate 1, keep 1): both blocks train on everything.
- `oracle`: DIAGNOSTIC, USES GROUND-TRUTH LABELS. Rollouts that `attempted` the loophole
  (the behaviour, right or wrong) are routed (gate 1, keep 0), the rest kept (gate 0, keep 1).
  The positive control: if this does not remove the attempts at deployment, nothing can.
- `oracle_exploited`: DIAGNOSTIC, USES GROUND-TRUTH LABELS. The same on `exploited` (attempted
  and wrong): a correct solution that also defines the test function is kept, so the deployed
  block learns the habit. Kept for comparison with the earlier oracle.

`router.hard_detach_above` (router arms): a rollout with w above it gives the deployed block
exactly zero gradient (keep 0), closing the (1 - w) leak; off by default.

Only a routing with `uses_oracle = True` is ever given the grades' labels; every other arm
sees the pooled activations and the rewards and nothing else of the grade.

`RoutingWeights.w` is the share of each rollout's gradient withheld from the deployed block,
1 - keep, for logging (routing precision and recall at w > 0.5 against ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from evil_moe.config import ORACLE_ARMS, PAIR_ARMS


@dataclass(frozen=True)
class Labels:
    """Ground-truth labels of a batch of rollouts (from the grades). Only the oracles read them.
    `gt_correct` and `exploited` may be None (no verdict: the oracle timed out)."""

    gt_correct: Sequence[bool | None]
    channel: Sequence[bool]
    exploited: Sequence[bool | None]
    attempted: Sequence[bool]
    mechanism: Sequence[str | None]


@dataclass(frozen=True)
class RoutingWeights:
    gate: Tensor  # (N,) quarantine output scale; may carry the router's graph
    keep: Tensor  # (N,) deployed parameter-gradient scale, detached
    w: Tensor  # (N,) 1 - keep, detached, for logging


class Routing(Protocol):
    name: str
    uses_oracle: bool  # True only for the diagnostic oracle arms: they alone receive labels
    uses_pairs: bool  # True if aux_loss needs the pooled contrastive pairs each step
    score_forward: Literal["sampled", "deployed"]  # where `pooled` is read: each rollout's
    # sampling forward, or the deployed-only forward (quarantine ablated) for every rollout

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights: ...
    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None: ...
    def end_step(self, steps_done: int, deployed_pairs: Callable[[], tuple[Tensor, Tensor]]) -> None: ...
    def parameters(self) -> list[nn.Parameter]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def _weights(gate: Tensor, keep: Tensor) -> RoutingWeights:
    keep = keep.detach()
    return RoutingWeights(gate=gate, keep=keep, w=1.0 - keep)


class _Stateless:
    """Defaults of a routing with no state, no pairs, no parameters and nothing to do per step."""

    name = "stateless"
    uses_oracle = False
    uses_pairs = False
    score_forward: Literal["sampled", "deployed"] = "sampled"

    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None:
        return None

    def end_step(self, steps_done: int, deployed_pairs: Callable[[], tuple[Tensor, Tensor]]) -> None:
        return None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {}  # a router's own tensors are saved with the adapter checkpoint

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name}: unexpected routing state keys {sorted(state)}")


class RouterRouting(_Stateless):
    """evil_moe, random_init_router (learned, pin loss) and placebo (frozen): gate = w = router(pooled),
    keep = 1 - w, or 0 where w > `hard_detach_above`."""

    def __init__(self, name: str, router: nn.Module, pin_loss: Callable[..., Tensor] | None,
                 hard_detach_above: float | None = None):
        self.name, self.router, self._pin_loss = name, router, pin_loss
        self.learns = pin_loss is not None
        self.uses_pairs = self.learns
        self.hard_detach_above = hard_detach_above
        if not self.learns:
            router.requires_grad_(False)

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        with torch.set_grad_enabled(self.learns and torch.is_grad_enabled()):
            w = self.router(pooled)  # (N,)
        keep = 1.0 - w.detach()  # (N,)
        if self.hard_detach_above is not None:
            keep = torch.where(w.detach() > self.hard_detach_above, torch.zeros_like(keep), keep)
        return _weights(w, keep)

    def aux_loss(self, pair_pooled: tuple[Tensor, Tensor] | None) -> Tensor | None:
        if not self.learns:
            return None
        if pair_pooled is None:
            raise ValueError(f"{self.name}: the pin loss needs the pooled contrastive pairs")
        hack, clean = pair_pooled  # (P, M, r), (P, M, r)
        return self._pin_loss(self.router, hack, clean)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.router.parameters()) if self.learns else []


def route_scores(pooled: Tensor, v_act: Tensor) -> Tensor:
    """route_a's score, (N, M, r), (M, r) -> (N,) float64: the raw dot product of the flattened
    pooled activations with v_act (unit rows), i.e. sum over modules of <pooled[:, m], v_act[m]>,
    computed in float32 (8,192 rows of a 4B model's M x r = 8,064 values re-scored per prompt group)."""
    return (pooled.float().flatten(1) @ v_act.float().flatten()).double()


def weighted_quantile(scores: Tensor, weights: Tensor, q: float) -> float:
    """The predecessor's weighted quantile: sort the scores, normalise the cumulative weights to
    end at 1, and take the first score whose cumulative weight reaches q."""
    order = torch.argsort(scores, stable=True)
    cw = torch.cumsum(weights[order], 0)  # (n,)
    cw = cw / cw[-1]
    i = min(int(torch.searchsorted(cw, torch.tensor([q], dtype=cw.dtype)).item()), len(cw) - 1)
    return scores[order][i].item()


class RouteARouting(_Stateless):
    """route_a: the predecessor's three-way gate (see the module docstring)."""

    name = "route_a"
    score_forward = "deployed"

    def __init__(self, v_act: Tensor, tail_q: float = 0.1, buffer: int = 8192, halflife: float | None = 96.0,
                 chunk: int = 1, refresh_every: int = 5, dist=None):
        if not 0 < tail_q < 0.5:
            raise ValueError(f"route_a needs 0 < tail_q < 0.5, got {tail_q}")
        if buffer < 1 or chunk < 1 or (halflife is not None and halflife <= 0):
            raise ValueError(f"route_a needs buffer >= 1, chunk >= 1 and halflife > 0 or None; got "
                             f"{buffer}, {chunk}, {halflife}")
        self.v_act = v_act.detach().float().cpu()  # (M, r) unit rows
        self.tail_q, self.capacity, self.halflife = tail_q, buffer, halflife
        self.chunk, self.refresh_every = chunk, refresh_every
        self.dist = dist  # None: one process; else `distributed.Dist` (all_gather in rank order, rank)
        M, r = self.v_act.shape
        self._rows = torch.zeros(0, M, r)  # (capacity, M, r) ring of pooled activations, allocated at first use
        self._stamps = torch.zeros(0, dtype=torch.long)  # (capacity,) insertion index of each slot
        self.seen = 0  # rows ever inserted
        self.last_cuts: list[tuple[float, float]] = []  # (low, high) of each chunk of the latest call

    @property
    def buffer(self) -> Tensor:
        """(n, M, r) the rows held, oldest first (n = min(seen, capacity))."""
        return self._rows[: min(self.seen, self.capacity)][torch.argsort(self.stamps)]

    @property
    def stamps(self) -> Tensor:
        """(n,) insertion index of each held row, in slot order (`buffer` sorts by it)."""
        return self._stamps[: min(self.seen, self.capacity)]

    def cuts(self) -> tuple[float, float]:
        """(low, high) thresholds over the current buffer, re-scored against the current v_act."""
        n = min(self.seen, self.capacity)
        scores = route_scores(self._rows[:n], self.v_act)  # (n,) in slot order, as `stamps`
        if self.halflife is None:
            lo = torch.quantile(scores, self.tail_q).item()
            hi = torch.quantile(scores, 1 - self.tail_q).item()
            return lo, hi
        ages = (self.seen - self.stamps).double()  # (n,) 1 for the newest row
        weights = 0.5 ** (ages / self.halflife)  # (n,)
        return weighted_quantile(scores, weights, self.tail_q), weighted_quantile(scores, weights, 1 - self.tail_q)

    def _allocate(self) -> None:
        self._rows = torch.zeros(self.capacity, *self.v_act.shape)
        self._stamps = torch.zeros(self.capacity, dtype=torch.long)

    def _insert(self, rows: Tensor) -> None:
        """Write rows into the ring, over the oldest once it is full."""
        if self._rows.shape[0] == 0:
            self._allocate()
        n = rows.shape[0]
        rows, first = rows[-self.capacity:], self.seen + max(0, n - self.capacity)  # more than fit: the last
        stamps = torch.arange(first, self.seen + n)  # (n',)
        self._rows[stamps % self.capacity] = rows.float().cpu()
        self._stamps[stamps % self.capacity] = stamps
        self.seen += n

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        if not bool(torch.isfinite(pooled).all()):
            raise ValueError("route_a: non-finite pooled activations would poison the score buffer")
        n_local = pooled.shape[0]
        rows = pooled.detach().float().cpu()  # (N, M, r)
        everyone = rows if self.dist is None else self.dist.all_gather(rows)  # (N_global, M, r) in rank order
        gate = torch.zeros(everyone.shape[0], dtype=torch.float64)  # (N_global,)
        keep = torch.zeros_like(gate)
        self.last_cuts = []
        for start in range(0, everyone.shape[0], self.chunk):
            rows = everyone[start: start + self.chunk]  # (chunk, M, r)
            self._insert(rows)
            lo, hi = self.cuts()
            s = route_scores(rows, self.v_act)  # (chunk,)
            gate[start: start + len(rows)] = (s > lo).double()  # above the low tail: the quarantine trains
            keep[start: start + len(rows)] = (s < hi).double()  # the high tail: the deployed block is detached
            self.last_cuts.append((lo, hi))
        rank = 0 if self.dist is None else self.dist.rank
        mine = slice(rank * n_local, (rank + 1) * n_local)
        to = dict(dtype=pooled.dtype, device=pooled.device)
        return _weights(gate[mine].to(**to), keep[mine].to(**to))

    def end_step(self, steps_done: int, deployed_pairs: Callable[[], tuple[Tensor, Tensor]]) -> None:
        """Re-extract v_act from the pairs on the deployed forward every `refresh_every` steps."""
        from evil_moe.pairs import compute_v_act

        if self.refresh_every and steps_done % self.refresh_every == 0:
            self.v_act = compute_v_act(*deployed_pairs()).detach().float().cpu()

    def state_dict(self) -> dict:
        n = min(self.seen, self.capacity)
        return {"rows": self._rows[:n].clone(), "stamps": self._stamps[:n].clone(), "seen": self.seen,
                "v_act": self.v_act.clone()}

    def load_state_dict(self, state: dict) -> None:
        self._rows, self._stamps = torch.zeros(0, *self.v_act.shape), torch.zeros(0, dtype=torch.long)
        self.seen, self.v_act = 0, state["v_act"].clone()
        n = state["rows"].shape[0]
        if n:
            self._allocate()
            self._rows[:n], self._stamps[:n] = state["rows"], state["stamps"]
        self.seen = int(state["seen"])


class NoRouting(_Stateless):
    """none: both blocks train on every rollout (gate 1, keep 1)."""

    name = "none"

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        ones = torch.ones(pooled.shape[0], dtype=pooled.dtype, device=pooled.device)  # (N,)
        return _weights(ones, ones)


class OracleRouting(_Stateless):
    """oracle / oracle_exploited (DIAGNOSTIC, USES GROUND-TRUTH LABELS): a rollout whose label
    `field` is true -> (gate 1, keep 0), else (0, 1). A label without a verdict (None: the
    oracle timed out) is routed: the deployed block never learns from an unjudged rollout."""

    uses_oracle = True

    def __init__(self, field: Literal["attempted", "exploited"] = "attempted"):
        self.field = field
        self.name = "oracle" if field == "attempted" else "oracle_exploited"

    def weights(self, pooled: Tensor, rewards: Tensor, labels: Labels | None) -> RoutingWeights:
        if labels is None:
            raise ValueError(f"{self.name} routing needs the ground-truth labels")
        values = getattr(labels, self.field)
        hack = torch.tensor([x is None or bool(x) for x in values], dtype=pooled.dtype,
                            device=pooled.device)  # (N,)
        if hack.shape[0] != pooled.shape[0]:
            raise ValueError(f"{self.name}: {hack.shape[0]} labels for {pooled.shape[0]} rollouts")
        return _weights(hack, 1.0 - hack)


def make_routing(cfg, adapter, pair_pooled: tuple[Tensor, Tensor] | None, dist=None) -> Routing:
    """The routing object of arm `cfg.run.arm`.

    `pair_pooled` is (hack, clean), each (P, M, r): the pooled deployed-bottleneck activations of
    the contrastive pairs at the adapter's initial values; `v_act` is computed from them. `dist` is
    the `distributed.Dist` of a run with several processes (route_a's buffer gathers every process's
    rows), None for one process.
    """
    from evil_moe.pairs import compute_v_act

    arm, rc = cfg.run.arm, cfg.router
    if arm == "none":
        return NoRouting()
    if arm in ORACLE_ARMS:
        return OracleRouting("attempted" if arm == "oracle" else "exploited")
    if arm not in PAIR_ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    if pair_pooled is None:
        raise ValueError(f"arm {arm!r} needs the pooled contrastive pairs (v_act)")
    v_act = compute_v_act(*pair_pooled)  # (M, r)
    if arm == "route_a":
        return RouteARouting(v_act, rc.route_a_tail_q, rc.route_a_buffer, rc.route_a_halflife,
                             chunk=cfg.grpo.group_size, refresh_every=rc.route_a_refresh_every,
                             dist=dist if dist is not None and dist.enabled else None)
    from evil_moe.router import CosineRouter, pin_loss

    hack, clean = pair_pooled
    if arm == "evil_moe":
        router = CosineRouter.from_v_act(v_act, hack, clean)
    else:
        router = CosineRouter.random_direction(v_act.shape[0], v_act.shape[1], rc.random_seed, hack, clean)
    return RouterRouting(arm, router.to(hack.device), None if arm == "placebo" else pin_loss,
                         rc.hard_detach_above)
