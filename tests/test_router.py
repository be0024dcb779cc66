"""The cosine router and the pin loss."""

import math

import pytest
import torch
from tiny import tiny_qwen3

from evil_moe.adapter import attach_adapter, soft_routing
from evil_moe.router import CosineRouter, mean_cosine, pin_loss

M, R = 5, 4


def pair_pools(seed=0, P=6):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(M, R, generator=g)
    clean = torch.randn(P, M, R, generator=g)
    hack = clean + 1.5 * direction  # hack sides shifted along one direction
    return hack, clean, direction


def test_forward_is_the_formula_and_records_last_weights():
    hack, clean, _ = pair_pools()
    u = torch.randn(M, R)
    router = CosineRouter(u, scale=3.0, bias=0.1, source="v_act")
    assert router.last_weights is None
    w = router(hack)
    manual = torch.stack([
        torch.sigmoid(torch.tensor(3.0 * (sum(
            (hack[i, m] @ u[m] / (hack[i, m].norm() * u[m].norm())).item() for m in range(M)) / M - 0.1)))
        for i in range(len(hack))])
    torch.testing.assert_close(w, manual, rtol=0, atol=1e-6)
    assert w.shape == (len(hack),) and torch.equal(router.last_weights, w.detach())
    pin_loss(router, hack, clean)
    assert torch.equal(router.last_weights, w.detach())  # the pin loss does not overwrite it


def test_from_v_act_init_separates_pairs():
    hack, clean, direction = pair_pools()
    router = CosineRouter.from_v_act(direction, hack, clean)
    mh, mc = mean_cosine(hack, router.u).mean(), mean_cosine(clean, router.u).mean()
    assert router.source == "v_act"
    torch.testing.assert_close(router.bias.detach(), (mh + mc) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.sigmoid(router.scale * (mh - router.bias)), torch.tensor(0.9), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.sigmoid(router.scale * (mc - router.bias)), torch.tensor(0.1), rtol=0, atol=1e-5)
    torch.testing.assert_close(router.u.norm(dim=-1), torch.ones(M), rtol=0, atol=1e-6)


def test_random_direction_is_seeded_and_scale_is_floored():
    hack, clean, _ = pair_pools()
    a = CosineRouter.random_direction(M, R, seed=3, hack=clean, clean=clean)  # no separation at all
    b = CosineRouter.random_direction(M, R, seed=3, hack=clean, clean=clean)
    c = CosineRouter.random_direction(M, R, seed=4, hack=clean, clean=clean)
    assert torch.equal(a.u, b.u) and not torch.equal(a.u, c.u) and a.source == "random"
    assert a.scale.item() == pytest.approx(math.log(9) / 0.05)


def test_oracle_router_is_labelled_and_uses_labelled_means():
    hack, clean, _ = pair_pools()
    pooled, labels = torch.cat([hack, clean]), torch.tensor([1] * len(hack) + [0] * len(clean))
    router = CosineRouter.from_oracle_rollouts(pooled, labels)
    assert router.source == "oracle"
    d = hack.mean(0) - clean.mean(0)
    torch.testing.assert_close(router.u.detach(), d / d.norm(dim=-1, keepdim=True), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        CosineRouter.from_oracle_rollouts(pooled, torch.ones(len(pooled)))


def test_pin_loss_is_bce_and_trains_the_router():
    hack, clean, _ = pair_pools()
    router = CosineRouter.random_direction(M, R, seed=0, hack=hack, clean=clean)
    w_h, w_c = torch.sigmoid(router.logits(hack)), torch.sigmoid(router.logits(clean))
    manual = -(torch.log(w_h).sum() + torch.log(1 - w_c).sum()) / (2 * len(hack))
    torch.testing.assert_close(pin_loss(router, hack, clean), manual, rtol=0, atol=1e-6)
    opt = torch.optim.Adam(router.parameters(), lr=0.05)
    first = pin_loss(router, hack, clean).item()
    for _ in range(30):
        opt.zero_grad()
        pin_loss(router, hack, clean).backward()
        opt.step()
    assert pin_loss(router, hack, clean).item() < 0.7 * first


def test_router_gradient_arrives_only_through_w_and_pin_loss():
    model = tiny_qwen3(vocab_size=400)
    adapter = attach_adapter(model, rank=R, alpha=8.0)
    x = torch.randint(3, 400, (3, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 6)
    with torch.no_grad(), adapter.pooling(mask) as pooled:
        model(x)
    pooled = pooled.tensor()  # (3, M, R), detached
    router = CosineRouter(torch.randn(len(adapter.layers), R), 2.0, 0.0, "random")
    params = list(router.parameters())
    w = router(pooled)
    with adapter.routing(*soft_routing(w)):
        loss = model(x).logits.pow(2).mean()
    (gw,) = torch.autograd.grad(loss, w, retain_graph=True)
    expected = torch.autograd.grad(w, params, grad_outputs=gw, retain_graph=True)
    got = torch.autograd.grad(loss, params, retain_graph=True)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # adapter gradients are the same as with a constant w: nothing flows from the router into them
    adapter_params = adapter.deployed_parameters() + adapter.quarantine_parameters()
    routed = torch.autograd.grad(loss, adapter_params)
    with adapter.routing(*soft_routing(w.detach())):
        constant = torch.autograd.grad(model(x).logits.pow(2).mean(), adapter_params)
    assert all(torch.equal(a, b) for a, b in zip(routed, constant, strict=True))
    # the pin loss reaches only router parameters
    pin_loss(router, pooled, pooled + 1.0).backward()
    assert all(p.grad is not None for p in params)
    assert all(p.grad is None for p in model.parameters())


def test_shape_errors():
    router = CosineRouter(torch.randn(M, R), 1.0, 0.0, "v_act")
    with pytest.raises(ValueError, match="does not match"):
        router(torch.randn(2, M + 1, R))
    with pytest.raises(ValueError, match="source"):
        CosineRouter(torch.randn(M, R), 1.0, 0.0, "labels")
