"""The two-expert LoRA adapter: a deployed block and a quarantine block on every target Linear.

Per target Linear with frozen weight W and scaling s = alpha / (2 r) (the scaling PEFT gives a
rank-2r LoRA, so the whole adapter is a rank-2r LoRA split in two blocks):

    y = W x + s * [ (B_dep A_dep x - B0_dep A0_dep x) + gate * (B_quar A_quar x - B0_quar A0_quar x) ]

A0, B0 are frozen copies of the initial values, so the delta is exactly 0.0 at init although
both A and B start non-zero and both blocks get gradients. Deployment ablation resets the
quarantine block to (A0_quar, B0_quar), which makes its term exactly zero.

Routing is per rollout, through two (B,) tensors set by `ExpertAdapter.routing(gate, keep)`:
- gate scales the quarantine block's output (value and gradient, plain chain rule);
- keep scales only the gradient the deployed block's *parameters* receive from each rollout;
  the deployed output value and the gradient passed on to the layer input are unchanged.
The method uses `soft_routing(w)`: gate = w, keep = 1 - w. Without a routing context gate = 1
and keep = 1 (the as-trained model, both experts on).

Why the parameter gradient and not a detach: scaling the deployed output's activation gradient
(a detach mix such as `k * out + (1 - k) * out.detach()`) would also scale what reaches earlier
layers, so one rollout's weight would change every other layer's update. The routed backward
instead computes grad_x = A^T B^T g in full and only rescales each rollout's share of
dL/dA_dep and dL/dB_dep, which is exact per rollout because both parameter gradients are sums
over rollouts of per-rollout outer products.

Cost: both blocks and the init correction are one rank-4r product (`stacked_factors`:
B A - B0 A0 = B (A - A0) + (B - B0) A0), run in one autograd Function with a hand-written backward
(2 matmuls forward, 4 backward), the work of a rank-4r LoRA; the tensors kept for backward are x
(shared with the base layer) and one (B, T, 4r) bottleneck. Without autograd (sampling, scoring)
the layer runs the Function's forward products directly, routed or not, from factors stacked once
per `ExpertAdapter.folded(False)` context. Gate 0 gives a rollout the deployed policy's forward
(the quarantine block's columns of the bottleneck are zeroed, as ablating the block zeroes their
factors), so one batch can hold rows of both policies.
`benchmarks/bench_adapter.py` measures it against PEFT's rank-2r LoRA.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BLOCK_KEYS = ("A_dep", "B_dep", "A_quar", "B_quar", "A0_dep", "B0_dep", "A0_quar", "B0_quar")


def soft_routing(w: Tensor) -> tuple[Tensor, Tensor]:
    """The method's routing rule: (gate, keep) = (w, 1 - w) for per-rollout weights w (B,).

    The quarantine block's output is scaled by w (so w stays differentiable for the router);
    the deployed block's parameter gradient from rollout i is scaled by 1 - w_i (detached: it
    changes no forward value, so it carries no gradient). w = 0 is the deployment forward,
    w = 1 leaves the deployed block's parameters with exactly zero gradient.
    """
    return w, (1.0 - w).detach()


def _block_scale(v: Tensor, r: int, deployed: bool) -> Tensor:
    """(B,) per-rollout factor -> (B, 1, 2r) column scale on one block, ones on the other."""
    ones = torch.ones(v.shape[0], 1, r, dtype=v.dtype, device=v.device)  # (B, 1, r)
    part = v.view(-1, 1, 1).expand(-1, 1, r)  # (B, 1, r)
    return torch.cat([part, ones] if deployed else [ones, part], dim=-1)  # (B, 1, 2r)


def stacked_factors(A_dep: Tensor, A_quar: Tensor, B_dep: Tensor, B_quar: Tensor, A0: Tensor, B0: Tensor,
                    scaling: float) -> tuple[Tensor, Tensor]:
    """(P, Q) with s (B A - B0 A0) = Q P: P = [A - A0; A0] (4r, d_in), Q = s [B, B - B0] (d_out, 4r).

    This is the identity B A - B0 A0 = B (A - A0) + (B - B0) A0, so the delta is one rank-4r product
    (two matmuls per forward instead of four). Both differences are exactly zero at init and on an
    ablated block, so the delta is exactly zero there, as with the two products apart.
    """
    A = torch.cat([A_dep, A_quar])  # (2r, d_in)
    B = torch.cat([B_dep, B_quar], dim=1)  # (d_out, 2r)
    return torch.cat([A - A0, A0]), torch.cat([B, B - B0], dim=1) * scaling  # (4r, d_in), (d_out, 4r)


class _TwoBlockDelta(torch.autograd.Function):
    """delta = (h * [c, c]) @ Q^T with h = x @ P^T = [x (A - A0)^T, x A0^T], (P, Q) = `stacked_factors`,
    c = [1, gate]: s * ((x A^T) c) B^T - s * ((x A0^T) c) B0^T, the module docstring's delta.

    Backward: exact chain rule for x, the quarantine block and gate; the deployed block's
    parameter gradients use keep_i * g_i for rollout i (see the module docstring).
    """

    @staticmethod
    def forward(ctx, x, A_dep, A_quar, B_dep, B_quar, A0, B0, gate, keep, scaling):
        r = A_dep.shape[0]
        P, Q = stacked_factors(A_dep, A_quar, B_dep, B_quar, A0, B0, scaling)  # (4r, d_in), (d_out, 4r)
        # x is kept in its own dtype (the base layer keeps the same tensor) and cast again in the
        # backward: a bfloat16 model's inputs are not kept twice, once as float32 copies
        h = x.to(P.dtype) @ P.T  # (B, T, 4r)
        c = None if gate is None else _block_scale(gate, r, deployed=False).repeat(1, 1, 2)  # (B, 1, 4r)
        delta = (h if c is None else h * c) @ Q.T  # (B, T, d_out)
        ctx.save_for_backward(x, P, Q, h, c, keep)
        ctx.r, ctx.scaling = r, scaling
        return delta

    @staticmethod
    def backward(ctx, g):
        x, P, Q, h, c, keep = ctx.saved_tensors
        r, s = ctx.r, ctx.scaling
        gu = g @ Q  # (B, T, 4r): dL/d(h c) = s [g B, g (B - B0)]
        gh = gu if c is None else gu * c  # (B, T, 4r): dL/dh
        grad_x = (gh @ P).to(x.dtype)  # (B, T, d_in)
        u = h if c is None else h * c  # (B, T, 4r)
        hs, ghc = u[..., : 2 * r] + u[..., 2 * r:], gh[..., : 2 * r]  # (B, T, 2r): (x A^T) c and dL/d(x A^T)
        if keep is not None:
            k = _block_scale(keep.to(h.dtype), r, deployed=True)  # (B, 1, 2r)
            hs, ghc = hs * k, ghc * k
        grad_B = (g.flatten(0, -2).T @ hs.flatten(0, -2)) * s  # (d_out, 2r)
        grad_A = ghc.flatten(0, -2).T @ x.flatten(0, -2).to(P.dtype)  # (2r, d_in)
        grad_gate = None
        if ctx.needs_input_grad[7]:
            quar = torch.cat([gu[..., r: 2 * r] * h[..., r: 2 * r], gu[..., 3 * r:] * h[..., 3 * r:]], dim=-1)
            grad_gate = quar.sum(dim=(1, 2))  # (B,)
        return (grad_x, grad_A[:r], grad_A[r:], grad_B[:, :r], grad_B[:, r:],
                None, None, grad_gate, None, None)


class PooledActivations:
    """Per-module completion-token means of the deployed bottleneck A_dep @ x, from one forward.

    Filled by the adapter's layers inside `ExpertAdapter.pooling(mask)`. Recorded values are
    detached (computed under no_grad from the current A_dep), so a router reading them
    sends no gradient into the adapter or the model.
    """

    def __init__(self, names: Sequence[str], completion_mask: Tensor):
        if completion_mask.dim() != 2:
            raise ValueError(f"completion_mask must be (B, T), got shape {tuple(completion_mask.shape)}")
        counts = completion_mask.sum(dim=1)  # (B,)
        if bool((counts <= 0).any()):
            rows = torch.nonzero(counts <= 0).flatten().tolist()
            raise ValueError(f"completion_mask has no completion tokens in rows {rows}")
        self.names = list(names)
        self.mask = completion_mask
        self._counts = counts
        self._values: dict[str, Tensor] = {}

    @torch.no_grad()
    def _record(self, name: str, x: Tensor, A_dep: Tensor) -> None:
        if name in self._values:
            raise RuntimeError(f"pooling recorded module {name} twice: use one forward per pooling context")
        if x.shape[:2] != self.mask.shape:
            raise ValueError(f"{name}: input (B, T) = {tuple(x.shape[:2])} does not match "
                             f"completion_mask {tuple(self.mask.shape)}")
        dtype = torch.promote_types(x.dtype, torch.float32)  # sum over up to T tokens: never in bf16
        m = self.mask.to(dtype)  # (B, T)
        x_mean = torch.einsum("bt,btd->bd", m, x.to(dtype)) / self._counts.to(dtype)[:, None]  # (B, d_in)
        self._values[name] = x_mean.to(A_dep.dtype) @ A_dep.T  # (B, r)

    def tensor(self) -> Tensor:
        """(B, M, r) in the adapter's module order; raises if a module did not run."""
        missing = [n for n in self.names if n not in self._values]
        if missing:
            raise RuntimeError(f"no pooled activations for {len(missing)} modules (first: {missing[0]}); "
                               "run one forward inside the pooling context")
        return torch.stack([self._values[n] for n in self.names], dim=1)  # (B, M, r)


@dataclass
class _AdapterState:
    """Shared by one adapter's layers; changed only by ExpertAdapter's context managers."""

    gate: Tensor | None = None
    keep: Tensor | None = None
    columns: Tensor | None = None  # the no-grad forwards' (B, 1, 4r) column scale of gate, made at first use
    pool: PooledActivations | None = None
    enabled: bool = True


class TwoExpertLoRALinear(nn.Module):
    """A frozen `base_layer` plus a deployed and a quarantine LoRA block of rank r each."""

    def __init__(self, base_layer: nn.Linear, name: str, rank: int, alpha: float, state: _AdapterState,
                 generator: torch.Generator, b_init_std: float, dtype: torch.dtype | None = None):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{name}: expected nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer.requires_grad_(False)
        self.name, self.rank, self.alpha = name, rank, float(alpha)
        self.scaling = self.alpha / (2 * rank)
        self._state = state
        self._original_weight: Tensor | None = None
        self._stacked: tuple[Tensor, Tensor] | None = None  # `stacked()`, kept inside ExpertAdapter.folded(False)
        d_in, d_out = base_layer.in_features, base_layer.out_features
        kw = dict(dtype=dtype or base_layer.weight.dtype, device=base_layer.weight.device)
        A = torch.empty(2 * rank, d_in, dtype=torch.float32)  # (2r, d_in)
        for block in A.split(rank):  # kaiming-uniform per block, as PEFT does for one lora_A
            nn.init.kaiming_uniform_(block, a=math.sqrt(5), generator=generator)
        B = torch.randn(d_out, 2 * rank, generator=generator) * b_init_std  # (d_out, 2r)
        A, B = A.to(**kw), B.to(**kw)
        self.A_dep = nn.Parameter(A[:rank].clone())  # (r, d_in)
        self.A_quar = nn.Parameter(A[rank:].clone())  # (r, d_in)
        self.B_dep = nn.Parameter(B[:, :rank].clone())  # (d_out, r)
        self.B_quar = nn.Parameter(B[:, rank:].clone())  # (d_out, r)
        self.register_buffer("A0", A.clone())  # (2r, d_in) frozen [A0_dep; A0_quar]
        self.register_buffer("B0", B.clone())  # (d_out, 2r) frozen [B0_dep, B0_quar]

    A0_dep = property(lambda self: self.A0[: self.rank])
    A0_quar = property(lambda self: self.A0[self.rank:])
    B0_dep = property(lambda self: self.B0[:, : self.rank])
    B0_quar = property(lambda self: self.B0[:, self.rank:])

    @property
    def merged(self) -> bool:
        return self._original_weight is not None

    def forward(self, x: Tensor) -> Tensor:
        st = self._state
        if st.pool is not None:
            st.pool._record(self.name, x, self.A_dep)
        y = self.base_layer(x)  # (B, T, d_out)
        if self.merged or not st.enabled:
            if self.merged and st.gate is not None:
                raise RuntimeError(f"{self.name}: routing is not possible on a merged adapter; unmerge first")
            return y
        if st.gate is not None:
            if x.dim() != 3 or x.shape[0] != st.gate.shape[0]:
                raise ValueError(f"{self.name}: routing has {st.gate.shape[0]} rollouts but input "
                                 f"has shape {tuple(x.shape)}; expected (B, T, d_in)")
            gate, keep = st.gate.to(self.A_dep.dtype), st.keep
        else:
            gate = keep = None
        if not torch.is_grad_enabled():  # no autograd: the Function's forward products, without it
            P, Q = self._stacked if self._stacked is not None else self.stacked()  # (4r, d_in), (d_out, 4r)
            h = x.to(P.dtype) @ P.T  # (B, T, 4r)
            if gate is not None:  # (routed sampling: gate 0 is the deployed policy's row)
                if st.columns is None or st.columns.dtype != gate.dtype:  # once for all layers and tokens
                    st.columns = _block_scale(gate, self.rank, deployed=False).repeat(1, 1, 2)  # (B, 1, 4r)
                h = h * st.columns
            return y.add_((h @ Q.T).to(y.dtype))
        delta = _TwoBlockDelta.apply(x, self.A_dep, self.A_quar, self.B_dep, self.B_quar,
                                     self.A0, self.B0, gate, keep, self.scaling)  # (B, T, d_out)
        return y.add_(delta.to(y.dtype))  # in place: y is the base layer's fresh output, its backward needs only x

    def stacked(self) -> tuple[Tensor, Tensor]:
        """`stacked_factors` of this layer's current values: (P (4r, d_in), Q (d_out, 4r))."""
        return stacked_factors(self.A_dep, self.A_quar, self.B_dep, self.B_quar, self.A0, self.B0, self.scaling)

    def delta_weight(self) -> Tensor:
        """The as-trained dense delta s * (B A - B0 A0), (d_out, d_in), in the adapter's dtype."""
        A = torch.cat([self.A_dep, self.A_quar])  # (2r, d_in)
        B = torch.cat([self.B_dep, self.B_quar], dim=1)  # (d_out, 2r)
        return self.scaling * (B @ A - self.B0 @ self.A0)  # (d_out, d_in)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RuntimeError(f"{self.name}: already merged")
        w = self.base_layer.weight
        new = (w.to(self.A_dep.dtype) + self.delta_weight()).to(w.dtype)  # (d_out, d_in)
        if not bool(torch.isfinite(new).all()):
            raise ValueError(f"{self.name}: merged weight has non-finite values; not merged")
        self._original_weight = w.data
        w.data = new

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RuntimeError(f"{self.name}: not merged")
        self.base_layer.weight.data = self._original_weight
        self._original_weight = None

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, scaling={self.scaling:g}"


def subspace_reset(A: Tensor, B: Tensor, A0: Tensor, B0: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """Reset the part of the 2r bottleneck selected by projector P (2r, 2r) to its init.

    A' = (I - P) A + P A0 and B' = B (I - P) + B0 P, so B'A' - B0 A0 = B(I-P)A - B0(I-P)A0:
    the subspace's contribution to the delta is removed and the rest is kept.
    """
    eye = torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    return (eye - P) @ A + P @ A0, B @ (eye - P) + B0 @ P  # (2r, d_in), (d_out, 2r)


def random_projector(rank: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """Orthogonal projector (2r, 2r) onto a uniformly random r-dim subspace of R^2r."""
    g = torch.randn(2 * rank, rank, generator=generator, dtype=torch.float64)  # (2r, r)
    q, _ = torch.linalg.qr(g)  # (2r, r) orthonormal columns
    return (q @ q.T).to(dtype)  # (2r, 2r)


@dataclass(frozen=True)
class AdapterConfig:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    seed: int
    b_init_std: float
    dtype: str | None  # None: each layer uses its base weight's dtype

    def to_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}


class ExpertAdapter:
    """Handle on the adapter inside a model: parameters, routing, pooling, ablations, merging.

    State is changed only through the context managers below, each of which restores the exact
    previous state in `finally`. Ablations write the reset values into the parameters under
    no_grad and copy the saved originals back on exit (bit-exact); use them for evaluation and
    generation, not inside a forward whose backward has not yet run.
    """

    def __init__(self, model: nn.Module, layers: dict[str, TwoExpertLoRALinear],
                 state: _AdapterState, config: AdapterConfig):
        self.model, self.config = model, config
        self._layers, self._state = dict(layers), state
        self._ablation_depth = 0
        self._merged_at_depth: int | None = None
        self._stacked = False  # inside folded(False): the layers' stacked factors are kept

    @property
    def layers(self) -> dict[str, TwoExpertLoRALinear]:
        return dict(self._layers)

    @property
    def module_names(self) -> list[str]:
        return list(self._layers)

    @property
    def rank(self) -> int:
        return self.config.rank

    def deployed_parameters(self) -> list[nn.Parameter]:
        return [p for m in self._layers.values() for p in (m.A_dep, m.B_dep)]

    def quarantine_parameters(self) -> list[nn.Parameter]:
        return [p for m in self._layers.values() for p in (m.A_quar, m.B_quar)]

    @contextlib.contextmanager
    def routing(self, gate: Tensor, keep: Tensor) -> Iterator[None]:
        """Per-rollout routing for forwards (and their backward) inside the context."""
        for label, v in (("gate", gate), ("keep", keep)):
            if v.dim() != 1:
                raise ValueError(f"{label} must be (B,), got shape {tuple(v.shape)}")
            if not bool(((v >= 0) & (v <= 1)).all()):
                raise ValueError(f"{label} must lie in [0, 1], got {v.detach().tolist()}")
        if gate.shape != keep.shape:
            raise ValueError(f"gate {tuple(gate.shape)} and keep {tuple(keep.shape)} differ in shape")
        if self.merged:
            raise RuntimeError("routing is not possible on a merged adapter; unmerge first")
        st = self._state
        previous = (st.gate, st.keep, st.columns)
        st.gate, st.keep, st.columns = gate, keep.detach(), None
        try:
            yield
        finally:
            st.gate, st.keep, st.columns = previous

    @contextlib.contextmanager
    def pooling(self, completion_mask: Tensor) -> Iterator[PooledActivations]:
        """Record per-module completion-token means of A_dep @ x during one forward."""
        pooled = PooledActivations(self.module_names, completion_mask)
        previous = self._state.pool
        self._state.pool = pooled
        try:
            yield pooled
        finally:
            self._state.pool = previous

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The base model: adapter deltas off (pooling still records)."""
        if self.merged:
            raise RuntimeError("disabled() on a merged adapter would keep the merged delta; unmerge first")
        previous = self._state.enabled
        self._state.enabled = False
        try:
            yield
        finally:
            self._state.enabled = previous

    @contextlib.contextmanager
    def _overwritten(self, new_values: Callable[[TwoExpertLoRALinear], dict[str, Tensor]]) -> Iterator[None]:
        if self.merged or self._stacked:
            raise RuntimeError("ablation on a merged or stacked adapter (inside folded()); enter the ablation first")
        saved: list[tuple[nn.Parameter, Tensor]] = []
        self._ablation_depth += 1
        try:
            with torch.no_grad():
                for layer in self._layers.values():
                    for key, value in new_values(layer).items():
                        p = getattr(layer, key)
                        saved.append((p, p.detach().clone()))
                        p.copy_(value)
            yield
        finally:
            if self._merged_at_depth is not None and self._merged_at_depth >= self._ablation_depth:
                self.unmerge()
            with torch.no_grad():
                for p, original in reversed(saved):
                    p.copy_(original)
            self._ablation_depth -= 1

    @contextlib.contextmanager
    def frozen_quarantine(self) -> Iterator[None]:
        """The quarantine block takes no gradient inside (requires_grad off; restored after)."""
        params = self.quarantine_parameters()
        before = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, b in zip(params, before, strict=True):
                p.requires_grad_(b)

    def ablate_quarantine(self) -> contextlib.AbstractContextManager[None]:
        """Deployment ablation: quarantine block reset to its init (A0_quar, B0_quar), not zero."""
        return self._overwritten(lambda m: {"A_quar": m.A0_quar, "B_quar": m.B0_quar})

    def ablate_deployed(self) -> contextlib.AbstractContextManager[None]:
        """Deployed block reset to its init (A0_dep, B0_dep)."""
        return self._overwritten(lambda m: {"A_dep": m.A0_dep, "B_dep": m.B0_dep})

    def ablate_subspace(self, generator: torch.Generator) -> contextlib.AbstractContextManager[None]:
        """Control ablation of the same size: per module, a random r-dim subspace of the 2r
        bottleneck (drawn from `generator` in module order) reset to init via `subspace_reset`."""
        projectors = {n: random_projector(self.rank, generator) for n in self._layers}

        def values(m: TwoExpertLoRALinear) -> dict[str, Tensor]:
            P = projectors[m.name].to(m.A_dep.dtype)
            A = torch.cat([m.A_dep, m.A_quar])  # (2r, d_in)
            B = torch.cat([m.B_dep, m.B_quar], dim=1)  # (d_out, 2r)
            A2, B2 = subspace_reset(A, B, m.A0, m.B0, P)
            r = m.rank
            return {"A_dep": A2[:r], "A_quar": A2[r:], "B_dep": B2[:, :r], "B_quar": B2[:, r:]}

        return self._overwritten(values)

    @property
    def merged(self) -> bool:
        return self._merged_at_depth is not None

    @property
    def enabled(self) -> bool:
        """False inside `disabled()`: forwards are the base model's."""
        return self._state.enabled

    def merge(self) -> None:
        """Fold the current adapter (as trained, gate = 1) into the base weights for fast evaluation.

        Keeps each original weight tensor for an exact `unmerge()` (memory: one copy of the target
        weights). A merge made inside an ablation context is undone when that context exits.
        """
        if self.merged:
            raise RuntimeError("adapter is already merged")
        done: list[TwoExpertLoRALinear] = []
        try:
            for layer in self._layers.values():
                layer.merge()
                done.append(layer)
        except Exception:
            for layer in done:
                layer.unmerge()
            raise
        self._merged_at_depth = self._ablation_depth

    def unmerge(self) -> None:
        if not self.merged:
            raise RuntimeError("adapter is not merged")
        for layer in self._layers.values():
            layer.unmerge()
        self._merged_at_depth = None

    @contextlib.contextmanager
    def folded(self, wanted: bool = True) -> Iterator[None]:
        """Merged for the forwards inside (no-grad forwards with both experts at full weight), then
        unmerged exactly. Forwards inside equal the unmerged ones up to rounding. When not `wanted`
        (and outside autograd), each layer's `stacked()` factors are computed once for the no-grad
        forwards inside instead of once per forward: the same values, so the same results bit for
        bit (memory: 4r (d_in + d_out) floats per module). Nothing happens when disabled (the base
        model has nothing to merge) or when already merged or stacked. The parameters must not
        change inside (an ablation inside is refused: enter it first)."""
        usable = self.enabled and not self.merged and not self._stacked
        fold = wanted and usable
        if fold and torch.is_grad_enabled():
            raise RuntimeError("folded() is for no-grad forwards: merged, the adapter's parameters get no gradient")
        stack = not wanted and usable and not torch.is_grad_enabled()
        if fold:
            self.merge()
        if stack:
            for layer in self._layers.values():
                layer._stacked = layer.stacked()
            self._stacked = True
        try:
            yield
        finally:
            if fold and self.merged:
                self.unmerge()
            if stack:
                for layer in self._layers.values():
                    layer._stacked = None
                self._stacked = False

    def state_dict(self) -> dict[str, Tensor]:
        """Adapter tensors only, keyed `{module name}.{A_dep|B_dep|A_quar|B_quar|A0_dep|...}`."""
        return {f"{n}.{k}": getattr(m, k).detach().contiguous().clone()
                for n, m in self._layers.items() for k in BLOCK_KEYS}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load exactly the keys `state_dict()` produces (shapes checked; dtype cast to the adapter's)."""
        expected = {f"{n}.{k}" for n in self._layers for k in BLOCK_KEYS}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"adapter state mismatch: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                           f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        for n, m in self._layers.items():
            for k in BLOCK_KEYS:
                target, value = getattr(m, k), state[f"{n}.{k}"]
                if target.shape != value.shape:
                    raise ValueError(f"{n}.{k}: shape {tuple(value.shape)} != adapter's {tuple(target.shape)}")
                target.copy_(value)


def attach_adapter(model: nn.Module, rank: int, alpha: float,
                   target_modules: Sequence[str] = DEFAULT_TARGET_MODULES, seed: int = 0,
                   b_init_std: float = 0.01, dtype: torch.dtype | None = None) -> ExpertAdapter:
    """Replace every nn.Linear whose attribute name is in `target_modules` with a
    TwoExpertLoRALinear, in place, and freeze every other parameter of the model.

    Initial values come from one generator seeded with `seed`, in module-name order. Raises if a
    target name matches nothing or a matched module is not an nn.Linear (e.g. already wrapped).
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    targets = tuple(target_modules)
    found = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in targets]
    for n, m in found:
        if type(m) is not nn.Linear:
            raise TypeError(f"target module {n} is {type(m).__name__}, not nn.Linear (adapter already attached?)")
    unmatched = sorted(set(targets) - {n.rsplit(".", 1)[-1] for n, _ in found})
    if unmatched:
        raise ValueError(f"target modules {unmatched} match no module of {type(model).__name__}")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    state = _AdapterState()
    layers: dict[str, TwoExpertLoRALinear] = {}
    for name, linear in found:
        layer = TwoExpertLoRALinear(linear, name, rank, alpha, state, generator, b_init_std, dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, layer)
        layers[name] = layer
    config = AdapterConfig(rank, float(alpha), targets, seed, b_init_std,
                           None if dtype is None else str(dtype).removeprefix("torch."))
    return ExpertAdapter(model, layers, state, config)
