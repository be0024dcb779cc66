"""Dr.GRPO pieces, each against an independent reference."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from evil_moe.grpo import group_advantages, grpo_loss, token_logprobs
from tests.tiny import tiny_qwen3


def test_group_advantages_subtracts_group_mean_without_std():
    rewards = torch.tensor([0.0, 3.5, 0.5, 0.5, 3.0, 3.0, 0.0, 1.0])
    adv = group_advantages(rewards, group_size=4)
    expected = torch.tensor([0.0 - 1.125, 3.5 - 1.125, 0.5 - 1.125, 0.5 - 1.125,
                             3.0 - 1.75, 3.0 - 1.75, 0.0 - 1.75, 1.0 - 1.75])
    assert torch.equal(adv, expected)
    assert torch.equal(group_advantages(torch.full((4,), 3.0), 2), torch.zeros(4))


def test_weighted_baseline_is_the_weighted_group_mean():
    """With weights, the baseline is sum(w r) / sum(w) per group; a group with all weights 0 gets
    advantage 0; weights of another shape or below 0 are refused."""
    rewards = torch.tensor([3.5, 0.5, 0.5, 3.5, 1.0, 2.0, 3.0, 4.0])
    weights = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    adv = group_advantages(rewards, group_size=4, weights=weights)
    assert torch.equal(adv, torch.tensor([3.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    soft = torch.tensor([0.25, 0.5, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    base = (0.25 * 3.5 + 0.5 * 0.5 + 1.0 * 0.5) / 1.75
    torch.testing.assert_close(group_advantages(rewards, 4, weights=soft)[:4], rewards[:4] - base, atol=1e-6, rtol=0)
    # weights all 1: the group's mean, bit for bit
    assert torch.equal(group_advantages(rewards, 4, weights=torch.ones(8)), group_advantages(rewards, 4))
    assert (group_advantages(rewards, 4, weights=soft) < 0).any()
    torch.testing.assert_close(group_advantages(rewards, 4, positive_only=True, weights=soft),
                               group_advantages(rewards, 4, weights=soft).clamp(min=0.0), atol=0, rtol=0)
    # equal weights in a group: its plain mean, bit for bit (0.1 * r summed / 0.4 need not be)
    assert torch.equal(group_advantages(rewards, 4, weights=torch.full((8,), 0.1)), group_advantages(rewards, 4))
    with pytest.raises(ValueError, match="weights must be"):
        group_advantages(rewards, 4, weights=torch.ones(4))
    with pytest.raises(ValueError, match="weights must be"):
        group_advantages(rewards, 4, weights=-weights - 1)


def test_positive_only_advantages_floor_at_zero_and_keep_the_rest():
    """The floor changes the negative advantages only (to exactly 0), each group's mean stays the
    baseline, and a group of equal rewards still gives zeros."""
    rewards = torch.tensor([0.0, 3.5, 0.5, 0.5, 3.0, 3.0, 0.0, 1.0])
    signed = group_advantages(rewards, group_size=4)
    floored = group_advantages(rewards, group_size=4, positive_only=True)
    assert torch.equal(floored, torch.tensor([0.0, 3.5 - 1.125, 0.0, 0.0, 3.0 - 1.75, 3.0 - 1.75, 0.0, 0.0]))
    assert torch.equal(floored[signed > 0], signed[signed > 0]) and (signed < 0).sum() == 5
    assert torch.equal(group_advantages(torch.full((4,), 3.0), 2, positive_only=True), torch.zeros(4))


def test_group_advantages_rejects_ragged_groups():
    with pytest.raises(ValueError, match="group_size=3"):
        group_advantages(torch.zeros(4), group_size=3)


def _batch(n=3, t=9, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, t), generator=g)
    attn = torch.ones(n, t, dtype=torch.long)
    attn[1, -2:] = 0  # right padding
    cmask = torch.zeros(n, t, dtype=torch.long)
    cmask[:, 4:] = 1
    cmask[1, -2:] = 0
    return SimpleNamespace(input_ids=ids, attention_mask=attn, completion_mask=cmask)


def test_token_logprobs_match_full_log_softmax_on_completion_tokens():
    model = tiny_qwen3(vocab_size=50)
    batch = _batch()
    batch.completion_mask[0, 3] = 1  # row 0's completion starts a column earlier than the others
    got = token_logprobs(model, batch, temperature=0.7)  # (N, T)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ref = torch.log_softmax(logits.double() / 0.7, dim=-1)  # (N, T, V)
    ref = ref[:, :-1].gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    ref = torch.nn.functional.pad(ref, (1, 0)) * batch.completion_mask  # (N, T)
    assert got.shape == batch.input_ids.shape
    assert torch.equal(got[batch.completion_mask == 0], torch.zeros(int((batch.completion_mask == 0).sum())))
    torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)


def test_token_logprobs_chunking_changes_nothing(monkeypatch):
    import evil_moe.grpo as grpo

    model, batch = tiny_qwen3(vocab_size=50), _batch()
    whole = token_logprobs(model, batch, temperature=0.7)
    monkeypatch.setattr(grpo, "LOGIT_CHUNK", 1)  # one row per chunk
    assert torch.equal(token_logprobs(model, batch, temperature=0.7), whole)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_picked_log_softmax_equals_autograd_through_gather_and_logsumexp_bit_for_bit(dtype):
    """The fused backward of `token_logprobs` gives autograd's gradient of the plain expression
    bit for bit, signs of zero included (rows of zero incoming gradient: masked positions)."""
    from evil_moe.grpo import _PickedLogSoftmax

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 6, 50, generator=g) * 4).to(dtype).requires_grad_()  # (n, T, V)
    targets = torch.randint(0, 50, (4, 6), generator=g)  # (n, T)
    upstream = torch.randn(4, 6, generator=g)  # (n, T)
    upstream[:, :2] = 0.0  # masked positions send no gradient
    upstream[1, 3] = -0.0
    z = logits.float() / 0.7
    ref = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)
    (ref_grad,) = torch.autograd.grad(ref, logits, upstream)
    got = _PickedLogSoftmax.apply(logits, targets, 0.7)
    (got_grad,) = torch.autograd.grad(got, logits, upstream)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert got.dtype == torch.float32 and torch.equal(got.view(torch.int32), ref.view(torch.int32))
    assert got_grad.dtype == dtype and torch.equal(got_grad.view(bits), ref_grad.view(bits))


def test_token_logprobs_refuses_rows_without_completion():
    batch = _batch()
    batch.completion_mask[2] = 0
    with pytest.raises(ValueError, match="every row needs a completion token"):
        token_logprobs(tiny_qwen3(vocab_size=50), batch)


def test_grpo_loss_value_and_gradient_against_reference():
    torch.manual_seed(0)
    n, t = 4, 6
    logp = (-torch.rand(n, t, dtype=torch.float64) * 3).requires_grad_()
    ref_logp = -torch.rand(n, t, dtype=torch.float64) * 3
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75], dtype=torch.float64)
    mask = (torch.rand(n, t) > 0.3).long()
    loss, stats = grpo_loss(logp, adv, mask, max_new_tokens=8, batch_size=10,
                            ref_logp=ref_logp, kl_coef=0.1)
    loss.backward()
    # Reference written out per token with Python floats.
    total, grad = 0.0, torch.zeros(n, t, dtype=torch.float64)
    for i in range(n):
        for j in range(t):
            if mask[i, j]:
                lp, rf = logp[i, j].item(), ref_logp[i, j].item()
                d = rf - lp
                total += (-adv[i].item() + 0.1 * (math.exp(d) - d - 1)) / 80
                grad[i, j] = (-adv[i].item() + 0.1 * (1 - math.exp(d))) / 80
    assert loss.item() == pytest.approx(total, abs=1e-12)
    torch.testing.assert_close(logp.grad, grad, atol=1e-12, rtol=0)
    assert stats["pg_loss"] + stats["kl_loss"] == pytest.approx(total, abs=1e-12)
    assert stats["tokens"] == mask.sum().item()


def test_grpo_loss_of_slices_sums_to_whole_batch():
    torch.manual_seed(1)
    logp = -torch.rand(8, 5, dtype=torch.float64)
    adv = torch.randn(8, dtype=torch.float64)
    mask = (torch.rand(8, 5) > 0.2).long()
    whole, _ = grpo_loss(logp, adv, mask, 5, 8)
    parts = sum(grpo_loss(logp[s], adv[s], mask[s], 5, 8)[0] for s in (slice(0, 3), slice(3, 8)))
    assert whole.item() == pytest.approx(parts.item(), abs=1e-12)


def test_grpo_loss_without_kl_ignores_reference():
    logp = -torch.rand(2, 3)
    loss_a, stats = grpo_loss(logp, torch.ones(2), torch.ones(2, 3), 3, 2)
    loss_b, _ = grpo_loss(logp, torch.ones(2), torch.ones(2, 3), 3, 2, ref_logp=logp - 1, kl_coef=0.0)
    assert loss_a.item() == loss_b.item() == pytest.approx(-1.0)
    assert stats["kl_loss"] == 0.0


def test_grpo_loss_token_weight_scales_each_tokens_policy_gradient():
    """The truncated importance weight multiplies each token's policy-gradient term (detached: it
    carries no gradient itself), and leaves the KL term alone."""
    torch.manual_seed(2)
    logp = (-torch.rand(3, 4, dtype=torch.float64)).requires_grad_()
    ref = -torch.rand(3, 4, dtype=torch.float64)
    adv, mask = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.ones(3, 4)
    weight = torch.rand(3, 4, dtype=torch.float64).requires_grad_()
    loss, _ = grpo_loss(logp, adv, mask, 4, 3, ref_logp=ref, kl_coef=0.1, token_weight=weight)
    loss.backward()
    plain = logp.detach().clone().requires_grad_()
    kl_only, _ = grpo_loss(plain, torch.zeros(3, dtype=torch.float64), mask, 4, 3, ref_logp=ref, kl_coef=0.1)
    kl_only.backward()
    expected = -adv[:, None] * weight.detach() / 12 + plain.grad
    torch.testing.assert_close(logp.grad, expected, rtol=0, atol=1e-12)
    assert weight.grad is None
