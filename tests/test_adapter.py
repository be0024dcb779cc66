"""The two-expert adapter against independent plain-autograd references on a tiny Qwen3."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_qwen3
from torch import nn

from evil_moe.adapter import (
    TwoExpertLoRALinear,
    attach_adapter,
    random_projector,
    soft_routing,
    subspace_reset,
)

R = 4


def adapted(dtype=torch.float64, perturb=True, seed=0):
    model = tiny_qwen3(seed=seed, vocab_size=400, dtype=dtype)
    base = copy.deepcopy(model)
    adapter = attach_adapter(model, rank=R, alpha=8.0, seed=seed)
    if perturb:  # move both blocks off init so deltas and gradients are non-trivial
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            for p in adapter.deployed_parameters() + adapter.quarantine_parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return model, base, adapter


class RefLinear(nn.Module):
    """Plain-autograd reference of one adapted Linear with a scalar quarantine gate."""

    def __init__(self, layer: TwoExpertLoRALinear, gate_box: list):
        super().__init__()
        self.src = [layer]  # not registered: the parameters stay the original model's
        self.gate_box = gate_box

    def forward(self, x):
        L = self.src[0]
        y = F.linear(x, L.base_layer.weight, L.base_layer.bias)
        dep = (x @ L.A_dep.T) @ L.B_dep.T - (x @ L.A0_dep.T) @ L.B0_dep.T
        quar = (x @ L.A_quar.T) @ L.B_quar.T - (x @ L.A0_quar.T) @ L.B0_quar.T
        return y + L.scaling * (dep + self.gate_box[0] * quar)


def reference_model(model, adapter):
    ref = copy.deepcopy(model)
    gate_box = [1.0]
    for name, layer in adapter.layers.items():
        parent, _, attr = name.rpartition(".")
        setattr(ref.get_submodule(parent), attr, RefLinear(layer, gate_box))
    return ref, gate_box


def ids(batch=3, length=6, seed=0):
    return torch.randint(3, 400, (batch, length), generator=torch.Generator().manual_seed(seed))


def all_params(adapter):
    return adapter.deployed_parameters() + adapter.quarantine_parameters()


def grads_of(params, loss):
    return [g.clone() for g in torch.autograd.grad(loss, params, allow_unused=False)]


def test_zero_delta_at_init_is_bit_exact():
    model, base, adapter = adapted(dtype=torch.float32, perturb=False)
    x = ids()
    expected = base(x).logits
    assert torch.equal(model(x).logits, expected)
    with adapter.routing(*soft_routing(torch.tensor([0.0, 0.3, 1.0]))):
        assert torch.equal(model(x).logits, expected)
    # both blocks have live gradients at init
    loss = model(x).logits.pow(2).sum()
    for g in grads_of(all_params(adapter), loss):
        assert g.abs().max() > 0


def test_forward_matches_reference_per_rollout():
    model, _, adapter = adapted()
    ref, gate_box = reference_model(model, adapter)
    x, w = ids(), torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    with adapter.routing(*soft_routing(w)):
        out = model(x).logits
    for i in range(3):
        gate_box[0] = w[i].item()
        torch.testing.assert_close(out[i], ref(x[i:i + 1]).logits[0], rtol=0, atol=1e-10)


def test_w0_forward_equals_ablated_forward():
    model, _, adapter = adapted()
    x = ids()
    with adapter.routing(*soft_routing(torch.zeros(3, dtype=torch.float64))):
        routed = model(x).logits
    with adapter.ablate_quarantine():
        ablated = model(x).logits
    torch.testing.assert_close(routed, ablated, rtol=0, atol=1e-12)
    assert (routed - model(x).logits).abs().max() > 1e-6  # the quarantine block does something


def test_per_rollout_parameter_grads_match_one_sample_references():
    model, _, adapter = adapted()
    ref, gate_box = reference_model(model, adapter)
    x = ids()
    w = torch.tensor([0.15, 0.6, 0.95], dtype=torch.float64)
    weights = torch.randn(3, 6, 400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dep, quar = adapter.deployed_parameters(), adapter.quarantine_parameters()
    for i in range(3):
        with adapter.routing(*soft_routing(w)):
            logits = model(x).logits  # (3, T, V): the mixed batch
        batch = grads_of(dep + quar, (logits[i] * weights[i]).sum())
        gate_box[0] = w[i].item()
        one = grads_of(dep + quar, (ref(x[i:i + 1]).logits[0] * weights[i]).sum())  # sample i alone
        for got, unrouted in zip(batch[: len(dep)], one[: len(dep)], strict=True):
            torch.testing.assert_close(got, (1 - w[i]) * unrouted, rtol=0, atol=1e-6)
        for got, expected in zip(batch[len(dep):], one[len(dep):], strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # the whole batch's gradient is the sum of the per-rollout ones
    with adapter.routing(*soft_routing(w)):
        total = grads_of(dep, (model(x).logits * weights).sum())
    parts = []
    for i in range(3):
        gate_box[0] = w[i].item()
        parts.append([(1 - w[i]) * g for g in grads_of(dep, (ref(x[i:i + 1]).logits[0] * weights[i]).sum())])
    for j, got in enumerate(total):
        torch.testing.assert_close(got, sum(p[j] for p in parts), rtol=0, atol=1e-6)


def test_input_gradient_is_not_changed_by_routing():
    model, _, adapter = adapted()
    ref, gate_box = reference_model(model, adapter)
    x = ids()
    emb = model.get_input_embeddings()(x).detach().requires_grad_(True)  # (3, T, d)
    w = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    gate, keep = soft_routing(w)
    with adapter.routing(gate, keep):
        routed = torch.autograd.grad(model(inputs_embeds=emb).logits.pow(2).sum(), emb)[0]
    with adapter.routing(gate, torch.ones(3, dtype=torch.float64)):
        unrouted = torch.autograd.grad(model(inputs_embeds=emb).logits.pow(2).sum(), emb)[0]
    assert torch.equal(routed, unrouted)
    for i in range(3):
        gate_box[0] = w[i].item()
        e = emb[i:i + 1].detach().requires_grad_(True)
        expected = torch.autograd.grad(ref(inputs_embeds=e).logits.pow(2).sum(), e)[0]
        torch.testing.assert_close(routed[i], expected[0], rtol=0, atol=1e-8)


def test_gate_gradient_matches_reference():
    model, _, adapter = adapted()
    ref, gate_box = reference_model(model, adapter)
    x = ids()
    w = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64, requires_grad=True)
    with adapter.routing(*soft_routing(w)):
        (gw,) = torch.autograd.grad(model(x).logits.pow(2).sum(), w)
    for i in range(3):
        g = w[i].detach().clone().requires_grad_(True)
        gate_box[0] = g
        (expected,) = torch.autograd.grad(ref(x[i:i + 1]).logits.pow(2).sum(), g)
        torch.testing.assert_close(gw[i], expected, rtol=0, atol=1e-8)


def test_frozen_quarantine_takes_no_gradient_and_restores():
    """Inside `frozen_quarantine` a backward fills the deployed block's gradients as outside, to
    the bit, and leaves the quarantine block's None; requires_grad is restored after, even on error."""
    model, _, adapter = adapted()
    x = ids()
    model(x).logits.pow(2).sum().backward()
    outside = [p.grad.clone() for p in adapter.deployed_parameters()]
    for p in all_params(adapter):
        p.grad = None
    with adapter.frozen_quarantine():
        assert not any(p.requires_grad for p in adapter.quarantine_parameters())
        model(x).logits.pow(2).sum().backward()
    assert all(p.grad is None for p in adapter.quarantine_parameters())
    assert all(torch.equal(p.grad, g) for p, g in zip(adapter.deployed_parameters(), outside, strict=True))
    assert all(p.requires_grad for p in adapter.quarantine_parameters())
    with pytest.raises(RuntimeError, match="boom"), adapter.frozen_quarantine():
        raise RuntimeError("boom")
    assert all(p.requires_grad for p in adapter.quarantine_parameters())


def test_w1_step_leaves_deployed_block_unchanged_with_fresh_optimizer():
    model, _, adapter = adapted(dtype=torch.float32)
    dep, quar = adapter.deployed_parameters(), adapter.quarantine_parameters()
    opt = torch.optim.AdamW([{"params": dep, "weight_decay": 0.0}, {"params": quar, "weight_decay": 0.01}], lr=1e-2)
    before_dep, before_quar = [p.detach().clone() for p in dep], [p.detach().clone() for p in quar]
    with adapter.routing(*soft_routing(torch.ones(3))):
        model(ids()).logits.pow(2).sum().backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in dep)
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(dep, before_dep, strict=True))
    assert all(not torch.equal(p, b) for p, b in zip(quar, before_quar, strict=True))


def test_w1_step_moves_deployed_block_with_momentum_or_weight_decay():
    # documented caveat: zero gradient does not stop AdamW's momentum or its decoupled decay
    for weight_decay, warm in ((0.0, True), (0.1, False)):
        model, _, adapter = adapted(dtype=torch.float32)
        dep = adapter.deployed_parameters()
        opt = torch.optim.AdamW([{"params": dep, "weight_decay": weight_decay}], lr=1e-2)
        if warm:  # one unrouted step gives the optimizer state
            with adapter.routing(*soft_routing(torch.zeros(3))):
                model(ids()).logits.pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        before = [p.detach().clone() for p in dep]
        with adapter.routing(*soft_routing(torch.ones(3))):
            model(ids()).logits.pow(2).sum().backward()
        opt.step()
        assert any(not torch.equal(p, b) for p, b in zip(dep, before, strict=True))


@pytest.mark.parametrize("which", ["quarantine", "deployed", "subspace"])
def test_ablation_resets_and_restores_exactly(which):
    model, _, adapter = adapted(dtype=torch.float32)
    x = ids()
    saved = {k: v.clone() for k, v in adapter.state_dict().items()}
    logits = model(x).logits
    ctx = {"quarantine": adapter.ablate_quarantine, "deployed": adapter.ablate_deployed,
           "subspace": lambda: adapter.ablate_subspace(torch.Generator().manual_seed(0))}[which]
    with pytest.raises(RuntimeError, match="boom"), ctx():
        inside = adapter.state_dict()
        for name, m in adapter.layers.items():
            if which == "quarantine":
                assert torch.equal(m.A_quar, m.A0_quar) and torch.equal(m.B_quar, m.B0_quar)
                assert torch.equal(m.A_dep, saved[f"{name}.A_dep"])
            if which == "deployed":
                assert torch.equal(m.A_dep, m.A0_dep) and torch.equal(m.B_dep, m.B0_dep)
        assert any(not torch.equal(inside[k], saved[k]) for k in saved)
        raise RuntimeError("boom")
    assert all(torch.equal(v, saved[k]) for k, v in adapter.state_dict().items())
    assert torch.equal(model(x).logits, logits)


def test_both_ablations_give_the_base_model():
    model, base, adapter = adapted()
    x = ids()
    with adapter.ablate_quarantine(), adapter.ablate_deployed():
        torch.testing.assert_close(model(x).logits, base(x).logits, rtol=0, atol=1e-12)
    with adapter.disabled():
        assert torch.equal(model(x).logits, base(x).logits)


def test_subspace_reset_with_coordinate_projector_is_quarantine_ablation():
    g = torch.Generator().manual_seed(0)
    A, A0 = torch.randn(2 * R, 7, generator=g), torch.randn(2 * R, 7, generator=g)
    B, B0 = torch.randn(5, 2 * R, generator=g), torch.randn(5, 2 * R, generator=g)
    P = torch.diag(torch.tensor([0.0] * R + [1.0] * R))
    A2, B2 = subspace_reset(A, B, A0, B0, P)
    assert torch.equal(A2, torch.cat([A[:R], A0[R:]])) and torch.equal(B2, torch.cat([B[:, :R], B0[:, R:]], 1))
    P = random_projector(R, g)
    torch.testing.assert_close(P @ P, P, rtol=0, atol=1e-12)
    torch.testing.assert_close(P, P.T, rtol=0, atol=0)
    assert abs(torch.trace(P).item() - R) < 1e-12
    A, A0, B, B0 = (t.double() for t in (A, A0, B, B0))
    A2, B2 = subspace_reset(A, B, A0, B0, P)
    eye = torch.eye(2 * R, dtype=torch.float64)
    torch.testing.assert_close(B2 @ A2 - B0 @ A0, B @ (eye - P) @ A - B0 @ (eye - P) @ A0, rtol=0, atol=1e-12)


def test_merge_matches_forward_and_unmerge_is_exact():
    model, _, adapter = adapted()
    x = ids()
    as_trained = model(x).logits
    weights = {n: m.base_layer.weight.detach().clone() for n, m in adapter.layers.items()}
    adapter.merge()
    torch.testing.assert_close(model(x).logits, as_trained, rtol=0, atol=1e-10)
    with pytest.raises(RuntimeError, match="merged"), adapter.routing(torch.ones(3), torch.ones(3)):
        pass
    adapter.unmerge()
    assert all(torch.equal(m.base_layer.weight, weights[n]) for n, m in adapter.layers.items())
    assert torch.equal(model(x).logits, as_trained)
    # a merge made inside an ablation gives the deployed model and is undone on exit
    with adapter.ablate_quarantine():
        deployed = model(x).logits
        adapter.merge()
        torch.testing.assert_close(model(x).logits, deployed, rtol=0, atol=1e-10)
    assert not adapter.merged and torch.equal(model(x).logits, as_trained)


def test_folded_merges_only_an_enabled_unmerged_adapter_and_restores_exactly():
    model = tiny_qwen3(seed=1)
    adapter = attach_adapter(model, rank=2, alpha=4.0, seed=0)
    with torch.no_grad():  # away from the init, so that merging changes the weights
        for layer in adapter.layers.values():
            layer.B_dep.add_(0.05)
            layer.B_quar.sub_(0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with adapter.folded():
            assert adapter.merged
            torch.testing.assert_close(model(input_ids=ids).logits, ref, atol=1e-5, rtol=0)
        with adapter.folded(False):
            assert not adapter.merged
        with adapter.disabled(), adapter.folded():
            assert not adapter.merged  # the base model has nothing to merge
        with pytest.raises(ValueError, match="inside"), adapter.folded():
            raise ValueError("inside")
        assert not adapter.merged
    with pytest.raises(RuntimeError, match="no-grad"), adapter.folded():
        pass  # a forward with gradients would give the merged adapter none
    assert not adapter.merged
    adapter.merge()
    with adapter.folded():  # already merged: left as it is
        assert adapter.merged
    assert adapter.merged
    with pytest.raises(RuntimeError, match="unmerge first"), adapter.disabled():
        pass
    adapter.unmerge()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_merge_refuses_non_finite_and_merges_nothing():
    model, _, adapter = adapted(dtype=torch.float32)
    layer = list(adapter.layers.values())[-1]
    weights = {n: m.base_layer.weight.detach().clone() for n, m in adapter.layers.items()}
    with torch.no_grad():
        layer.B_quar[0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        adapter.merge()
    assert not adapter.merged
    assert all(torch.equal(m.base_layer.weight, weights[n]) for n, m in adapter.layers.items())


def test_generation_with_kv_cache_matches_no_cache():
    model, _, adapter = adapted()
    prompt = ids(batch=2, length=5)
    states = {"on": contextlib.nullcontext, "quarantine": adapter.ablate_quarantine,
              "deployed": adapter.ablate_deployed,
              "subspace": lambda: adapter.ablate_subspace(torch.Generator().manual_seed(1))}
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        for ctx in states.values():
            with ctx():
                cached = model.generate(prompt, use_cache=True, **kw)
                assert cached.shape == (2, 9) and torch.equal(cached, model.generate(prompt, use_cache=False, **kw))
        adapter.merge()
        assert torch.equal(model.generate(prompt, use_cache=True, **kw), model.generate(prompt, use_cache=False, **kw))
        adapter.unmerge()


def test_pooling_matches_hook_reference_and_is_detached():
    model, _, adapter = adapted()
    x = ids(batch=2, length=7)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1]])
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: inputs.__setitem__(n, args[0].detach()))
             for n, m in adapter.layers.items()]
    with adapter.pooling(mask) as pooled:
        model(x).logits.sum().backward()
    for h in hooks:
        h.remove()
    got = pooled.tensor()  # (2, M, R)
    assert got.shape == (2, len(adapter.layers), R) and not got.requires_grad
    for j, (n, m) in enumerate(adapter.layers.items()):
        h = inputs[n] @ m.A_dep.detach().T  # (2, T, R)
        for b in range(2):
            expected = h[b][mask[b].bool()].mean(0)
            torch.testing.assert_close(got[b, j], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="no completion tokens"), adapter.pooling(torch.zeros(2, 7)):
        pass
    with adapter.pooling(mask) as pooled, pytest.raises(RuntimeError, match="twice"):
        model(x)
        model(x)
    with adapter.pooling(mask) as pooled, pytest.raises(RuntimeError, match="no pooled"):
        pooled.tensor()


def test_routing_validates_and_restores():
    model, _, adapter = adapted(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"), adapter.routing(torch.tensor([1.5]), torch.tensor([0.0])):
        pass
    with pytest.raises(ValueError, match="rollouts"), adapter.routing(torch.ones(2), torch.ones(2)):
        model(ids(batch=3))
    x = ids()
    plain = model(x).logits
    with adapter.routing(torch.zeros(3), torch.ones(3)):
        with adapter.routing(torch.ones(3), torch.ones(3)):
            assert torch.equal(model(x).logits, plain)
        assert not torch.equal(model(x).logits, plain)
    assert torch.equal(model(x).logits, plain)


def test_state_dict_round_trip_and_errors():
    model, _, adapter = adapted(dtype=torch.float32)
    state = adapter.state_dict()
    assert "model.layers.0.self_attn.q_proj.A_dep" in state and "model.layers.1.mlp.down_proj.B0_quar" in state
    fresh_model = tiny_qwen3(seed=0, vocab_size=400)
    fresh = attach_adapter(fresh_model, rank=R, alpha=8.0, seed=99)
    fresh.load_state_dict(state)
    x = ids()
    assert torch.equal(fresh_model(x).logits, model(x).logits)
    with pytest.raises(KeyError, match="missing"):
        fresh.load_state_dict({k: v for k, v in state.items() if not k.endswith("A_dep")})


def test_attach_freezes_model_and_rejects_bad_targets():
    model, _, adapter = adapted(dtype=torch.float32)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in all_params(adapter)}
    assert len(adapter.layers) == 2 * 7
    with pytest.raises(TypeError, match="already attached"):
        attach_adapter(model, rank=R, alpha=8.0)
    with pytest.raises(ValueError, match="match no module"):
        attach_adapter(tiny_qwen3(vocab_size=400), rank=R, alpha=8.0, target_modules=("q_proj", "qkv"))
