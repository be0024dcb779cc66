"""The arms' routing objects: each rule checked on hand-built pooled activations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from evil_moe.config import from_dict
from evil_moe.pairs import compute_v_act
from evil_moe.router import mean_cosine, unit_rows
from evil_moe.routing import (
    Labels,
    NoRouting,
    OracleRouting,
    RouteARouting,
    RouterRouting,
    make_routing,
)

M, R = 3, 2


def pooled_with_scores(scores: list[float], v: torch.Tensor) -> torch.Tensor:
    """(N, M, r) whose per-module cosine to v (M, r) is exactly each score (r = 2)."""
    v = unit_rows(v, "v")
    perp = torch.stack([-v[:, 1], v[:, 0]], dim=1)  # (M, 2) unit, orthogonal to v
    s = torch.tensor(scores, dtype=torch.float64)[:, None, None]  # (N, 1, 1)
    return (s * v.double() + (1 - s**2).sqrt() * perp.double()).float()  # (N, M, 2)


def pairs(seed=0, P=4):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(P, M, R, generator=g)
    return clean + torch.tensor([1.0, 0.5]), clean  # hack, clean


def cfg(arm):
    return from_dict({"run": {"arm": arm}, "router": {"route_a_keep_quantile": 0.25, "route_a_quantile": 0.75}})


def test_route_a_three_way_against_running_quantiles():
    v = torch.randn(M, R, generator=torch.Generator().manual_seed(1))
    ra = RouteARouting(unit_rows(v, "v"), keep_quantile=0.25, route_quantile=0.75)
    scores = [-0.9, -0.5, 0.0, 0.5, 0.9]
    rw = ra.weights(pooled_with_scores(scores, v), torch.zeros(5), None)
    # quantiles of the 5 scores: 0.25 -> -0.5, 0.75 -> 0.5 (linear interpolation)
    assert rw.gate.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]  # below -0.5: keep only
    assert rw.keep.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]  # above 0.5: route only
    assert rw.w.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    # the window keeps earlier scores: a batch of high scores is now partly "both"
    rw2 = ra.weights(pooled_with_scores([0.6, 0.6], v), torch.zeros(2), None)
    q_hi = torch.quantile(torch.tensor(scores + [0.6, 0.6], dtype=torch.float64), 0.75).item()
    assert 0.6 <= q_hi and rw2.keep.tolist() == [1.0, 1.0]
    state = ra.state_dict()
    fresh = RouteARouting(torch.zeros(M, R), 0.25, 0.75)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.history, ra.history) and torch.equal(fresh.v_act, ra.v_act)
    assert ra.parameters() == [] and ra.aux_loss(None) is None


def test_route_a_window_drops_oldest_scores():
    v = torch.ones(M, R)
    ra = RouteARouting(unit_rows(v, "v"), 0.5, 0.5, window=3)
    for s in (0.1, 0.2, 0.3, 0.4):
        ra.weights(pooled_with_scores([s], v), torch.zeros(1), None)
    torch.testing.assert_close(ra.history, torch.tensor([0.2, 0.3, 0.4]), atol=1e-6, rtol=0)


def test_route_a_uses_the_gathered_scores_of_all_processes():
    v = torch.ones(M, R)
    other = torch.tensor([0.8, 0.9])
    ra = RouteARouting(unit_rows(v, "v"), 0.5, 0.5, gather=lambda t: torch.cat([t, other]))
    rw = ra.weights(pooled_with_scores([0.1, 0.2], v), torch.zeros(2), None)
    assert ra.history.numel() == 4
    assert rw.gate.tolist() == [0.0, 0.0]  # both local scores lie below the global median


def test_none_trains_both_blocks_on_everything():
    rw = NoRouting().weights(torch.randn(4, M, R), torch.zeros(4), None)
    assert rw.gate.tolist() == rw.keep.tolist() == [1.0] * 4 and rw.w.tolist() == [0.0] * 4


def test_oracle_routes_exploited_rollouts_and_needs_labels():
    o = OracleRouting()
    assert o.uses_oracle and not NoRouting.uses_oracle and not RouterRouting.uses_oracle
    labels = Labels(gt_correct=[1, 0, 0], channel=[0, 1, 1], exploited=[False, True, False],
                    mechanism=[None, "run_tests", None])
    rw = o.weights(torch.randn(3, M, R), torch.zeros(3), labels)
    assert rw.gate.tolist() == [0.0, 1.0, 0.0] and rw.keep.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="ground-truth labels"):
        o.weights(torch.randn(3, M, R), torch.zeros(3), None)


def test_evil_moe_router_seeded_from_v_act_with_soft_gate_and_pin_loss():
    hack, clean = pairs()
    routing = make_routing(cfg("evil_moe"), SimpleNamespace(), (hack, clean))
    assert routing.name == "evil_moe" and routing.uses_pairs and not routing.uses_oracle
    torch.testing.assert_close(routing.router.u.detach(), unit_rows(compute_v_act(hack, clean), "v"))
    pooled = torch.randn(5, M, R)
    rw = routing.weights(pooled, torch.zeros(5), None)
    assert rw.gate.requires_grad and not rw.keep.requires_grad
    torch.testing.assert_close(rw.keep, 1 - rw.gate.detach())
    torch.testing.assert_close(rw.w, rw.gate.detach())
    pin = routing.aux_loss((hack, clean))
    pin.backward()
    assert all(p.grad is not None for p in routing.parameters()) and len(routing.parameters()) == 3
    # on its own pairs the seeded router already separates hack from clean sides
    assert routing.router(hack).mean() > 0.5 > routing.router(clean).mean()


def test_random_router_direction_is_seeded_and_not_v_act():
    hack, clean = pairs()
    a = make_routing(cfg("random_router"), SimpleNamespace(), (hack, clean))
    b = make_routing(cfg("random_router"), SimpleNamespace(), (hack, clean))
    assert torch.equal(a.router.u, b.router.u)
    v = unit_rows(compute_v_act(hack, clean), "v")
    assert mean_cosine(a.router.u.detach()[None], v).abs().item() < 0.99


def test_arms_without_pairs_and_unknown_arms():
    assert make_routing(cfg("none"), None, None).name == "none"
    assert make_routing(cfg("oracle"), None, None).name == "oracle"
    assert make_routing(cfg("route_a"), None, pairs()).name == "route_a"
    with pytest.raises(ValueError, match="needs the pooled contrastive pairs"):
        make_routing(cfg("evil_moe"), None, None)
