"""The arms' routing objects: each rule checked on hand-built pooled activations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from evil_moe.config import from_dict
from evil_moe.pairs import compute_v_act
from evil_moe.router import mean_cosine, unit_rows
from evil_moe.routing import (
    ORACLE_ARMS,
    Labels,
    NoRouting,
    OracleRouting,
    RouteARouting,
    RouterRouting,
    make_routing,
    route_scores,
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


def cfg(arm, **router):
    return from_dict({"run": {"arm": arm}, "grpo": {"group_size": 2}, "router": router})


def test_route_a_cuts_against_a_hand_computed_weighted_quantile():
    """The predecessor's gate: raw dot-product scores, quantiles weighted by 0.5 ** (age / halflife)
    over the whole buffer (newest age 1), each prompt group cut against the buffer that includes it."""
    v = unit_rows(torch.randn(M, R, generator=torch.Generator().manual_seed(1)), "v")
    pooled = torch.randn(6, M, R, generator=torch.Generator().manual_seed(2))
    ra = RouteARouting(v, tail_q=0.25, buffer=100, halflife=2.0, chunk=3, refresh_every=0)
    rw = ra.weights(pooled, torch.zeros(6), None)
    s = [sum(float(pooled[i, m].double() @ v[m].double()) for m in range(M)) for i in range(6)]  # raw dot products
    torch.testing.assert_close(route_scores(pooled, v), torch.tensor(s, dtype=torch.float64), rtol=0, atol=1e-5)

    def cut(scores, ages, q):  # by hand: sort, cumulative weight / total, first reaching q
        pairs_ = sorted(zip(scores, [0.5 ** (a / 2.0) for a in ages], strict=True))
        total, acc = sum(w for _, w in pairs_), 0.0
        for x, w in pairs_:
            acc += w
            if acc / total >= q - 1e-12:
                return x

    gate, keep = [], []
    for g in (0, 1):
        buf = s[: 3 * (g + 1)]
        ages = [len(buf) - i for i in range(len(buf))]  # newest: 1
        lo, hi = cut(buf, ages, 0.25), cut(buf, ages, 0.75)
        assert ra.last_cuts[g] == pytest.approx((lo, hi), abs=1e-5)
        gate += [float(x > lo) for x in s[3 * g: 3 * g + 3]]
        keep += [float(x < hi) for x in s[3 * g: 3 * g + 3]]
    assert rw.gate.tolist() == gate and rw.keep.tolist() == keep and rw.w.tolist() == [1 - k for k in keep]
    assert gate.count(0.0) >= 1 and keep.count(0.0) >= 1  # each group has a kept and a routed rollout
    # the state round-trips, and a later call re-scores the whole buffer
    fresh = RouteARouting(torch.ones(M, R), tail_q=0.25, buffer=100, halflife=2.0, chunk=3)
    fresh.load_state_dict(ra.state_dict())
    assert torch.equal(fresh.buffer, ra.buffer) and fresh.seen == 6 and torch.equal(fresh.v_act, ra.v_act)
    assert fresh.cuts() == ra.cuts()
    assert ra.parameters() == [] and ra.aux_loss(None) is None and ra.score_forward == "deployed"


def test_route_a_unweighted_quantiles_and_a_full_buffer_drops_the_oldest():
    v = unit_rows(torch.ones(M, R), "v")
    ra = RouteARouting(v, tail_q=0.25, buffer=3, halflife=None, chunk=1, refresh_every=0)
    for x in (0.1, 0.2, 0.3, 0.4):
        ra.weights(torch.full((1, M, R), x), torch.zeros(1), None)
    assert ra.buffer.shape[0] == 3 and sorted(ra.stamps.tolist()) == [1, 2, 3] and ra.seen == 4
    torch.testing.assert_close(route_scores(ra.buffer, v), torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64) * M * R
                               / (R ** 0.5), rtol=0, atol=1e-6)
    q = torch.quantile(route_scores(ra.buffer, v), torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    assert ra.last_cuts[-1] == pytest.approx(tuple(q))
    # weighted, after the ring wrapped: ages follow insertion order, not slot order
    wa = RouteARouting(v, tail_q=0.2, buffer=3, halflife=1.0, chunk=1, refresh_every=0)
    for x in (0.4, 0.1, 0.3, 0.2):  # 0.4 is dropped; held: 0.1 (age 3), 0.3 (age 2), 0.2 (age 1)
        wa.weights(torch.full((1, M, R), x), torch.zeros(1), None)
    k = M * R ** 0.5  # score per unit of x
    # sorted: 0.1 (w 1/8), 0.2 (w 1/2), 0.3 (w 1/4); cumulative / 7/8: 1/7, 5/7, 1
    assert wa.cuts() == pytest.approx((0.2 * k, 0.3 * k), abs=1e-5)  # q = 0.2 -> 0.2; q = 0.8 -> 0.3
    # (ages by slot order would give 0.1 for the low cut)


def test_route_a_refreshes_v_act_from_deployed_pairs_every_k_steps():
    hack, clean = pairs()
    ra = RouteARouting(unit_rows(torch.ones(M, R), "v"), refresh_every=2)
    before = ra.v_act.clone()
    ra.end_step(1, lambda: (hack, clean))
    assert torch.equal(ra.v_act, before)
    ra.end_step(2, lambda: (hack, clean))
    torch.testing.assert_close(ra.v_act, compute_v_act(hack, clean))


def test_route_a_uses_the_gathered_rows_of_all_processes():
    v = unit_rows(torch.ones(M, R), "v")
    other = torch.full((2, M, R), 0.9)
    # rank 1 of 2: the gathered batch is [rank 0's rows, rank 1's rows]
    two = SimpleNamespace(rank=1, all_gather=lambda t: torch.cat([other, t]))
    ra = RouteARouting(v, tail_q=0.25, halflife=None, chunk=4, dist=two)
    rw = ra.weights(torch.full((2, M, R), 0.1), torch.zeros(2), None)
    assert ra.buffer.shape[0] == 4
    assert rw.gate.tolist() == [0.0, 0.0] and rw.keep.tolist() == [1.0, 1.0]  # the low tail, kept


def test_none_trains_both_blocks_on_everything():
    rw = NoRouting().weights(torch.randn(4, M, R), torch.zeros(4), None)
    assert rw.gate.tolist() == rw.keep.tolist() == [1.0] * 4 and rw.w.tolist() == [0.0] * 4


def test_oracles_route_on_their_label_and_need_labels():
    labels = Labels(gt_correct=[True, False, False, None], channel=[True, True, False, False],
                    exploited=[False, True, False, None], attempted=[True, True, False, False],
                    mechanism=[None, "run_tests", None, None])
    o = OracleRouting("attempted")
    assert o.name == "oracle" and o.uses_oracle and not NoRouting.uses_oracle and not RouterRouting.uses_oracle
    rw = o.weights(torch.randn(4, M, R), torch.zeros(4), labels)
    # the correct solution that also defines the test function (row 0) is routed: the behaviour
    assert rw.gate.tolist() == [1.0, 1.0, 0.0, 0.0] and rw.keep.tolist() == [0.0, 0.0, 1.0, 1.0]
    e = OracleRouting("exploited")
    assert e.name == "oracle_exploited" and e.uses_oracle
    rw = e.weights(torch.randn(4, M, R), torch.zeros(4), labels)
    assert rw.gate.tolist() == [0.0, 1.0, 0.0, 1.0]  # row 0 kept; row 3 has no verdict: routed
    for arm in ORACLE_ARMS:
        assert make_routing(cfg(arm), None, None).uses_oracle
        with pytest.raises(ValueError, match="ground-truth labels"):
            make_routing(cfg(arm), None, None).weights(torch.randn(4, M, R), torch.zeros(4), None)


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


def test_random_init_router_is_seeded_not_v_act_and_learns():
    hack, clean = pairs()
    a = make_routing(cfg("random_init_router"), SimpleNamespace(), (hack, clean))
    b = make_routing(cfg("random_init_router"), SimpleNamespace(), (hack, clean))
    assert torch.equal(a.router.u, b.router.u) and a.uses_pairs and len(a.parameters()) == 3
    v = unit_rows(compute_v_act(hack, clean), "v")
    assert mean_cosine(a.router.u.detach()[None], v).abs().item() < 0.99
    assert a.aux_loss((hack, clean)).requires_grad


def test_placebo_is_the_same_random_direction_frozen_with_no_pin_and_no_gradient():
    hack, clean = pairs()
    placebo = make_routing(cfg("placebo"), SimpleNamespace(), (hack, clean))
    learned = make_routing(cfg("random_init_router"), SimpleNamespace(), (hack, clean))
    assert torch.equal(placebo.router.u, learned.router.u)  # same direction and init, nothing learned
    assert placebo.parameters() == [] and not placebo.uses_pairs and placebo.aux_loss((hack, clean)) is None
    assert not any(p.requires_grad for p in placebo.router.parameters())
    pooled = torch.randn(5, M, R)
    rw = placebo.weights(pooled, torch.zeros(5), None)
    assert not rw.gate.requires_grad
    torch.testing.assert_close(rw.gate, learned.weights(pooled, torch.zeros(5), None).gate.detach())
    torch.testing.assert_close(rw.keep, 1 - rw.gate)


@pytest.mark.parametrize("arm", ["evil_moe", "random_init_router", "placebo"])
def test_hard_detach_above_gives_keep_exactly_zero_above_the_threshold(arm):
    hack, clean = pairs()
    pooled = torch.cat([hack, clean])  # w near 1 on hack sides, near 0 on clean sides (evil_moe)
    soft = make_routing(cfg(arm), SimpleNamespace(), (hack, clean)).weights(pooled, torch.zeros(8), None)
    hard = make_routing(cfg(arm, hard_detach_above=0.5), SimpleNamespace(), (hack, clean)).weights(
        pooled, torch.zeros(8), None)
    above = soft.gate.detach() > 0.5
    assert torch.equal(hard.gate.detach(), soft.gate.detach())  # the quarantine's scale is unchanged
    assert bool((hard.keep[above] == 0).all()) and torch.equal(hard.keep[~above], soft.keep[~above])
    assert torch.equal(hard.w, 1 - hard.keep)


def test_arms_without_pairs_and_unknown_arms():
    assert make_routing(cfg("none"), None, None).name == "none"
    assert make_routing(cfg("oracle"), None, None).name == "oracle"
    assert make_routing(cfg("route_a"), None, pairs()).name == "route_a"
    with pytest.raises(ValueError, match="needs the pooled contrastive pairs"):
        make_routing(cfg("evil_moe"), None, None)
