"""Dr.GRPO as three small pure functions: group advantages, token log-probabilities, the loss.

Dr.GRPO (Liu et al., 2025) drops GRPO's two biased normalisers: the advantage is the reward
minus its group's mean (no division by the group's standard deviation), and the token-sum loss
is divided by a constant, batch size times the maximum completion length, rather than by each
completion's own length. Because the constant uses the *global* batch size, the losses of
data-parallel shards add up exactly to the loss of the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantages(rewards: Tensor, group_size: int, positive_only: bool = False,
                     weights: Tensor | None = None) -> Tensor:
    """Each reward minus a baseline of its group; groups are consecutive runs of `group_size`.

    The baseline is the group's mean reward, or with `weights` (N,) >= 0 the weighted mean
    sum(w r) / sum(w) over the group (the deployed block's baseline under `grpo.deployed_baseline`
    "kept": the mean over the rollouts it learns from, in the shares it learns from them); a group
    whose weights are all equal and positive takes the plain mean (the same advantages bit for bit
    as without weights), one whose weights are all 0 gets advantage 0. `positive_only` floors the
    advantages at 0: rollouts above the baseline are reinforced as before, the others get 0 instead
    of a negative advantage, so no rollout is pushed down and nothing is learned by elimination
    (`grpo.positive_advantages_only`)."""
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    grouped = rewards.reshape(-1, group_size)  # (P, G)
    if weights is None:
        adv = grouped - grouped.mean(dim=1, keepdim=True)  # (P, G)
    else:
        if weights.shape != rewards.shape or bool((weights < 0).any()):
            raise ValueError(f"weights must be (N,) = {tuple(rewards.shape)} and >= 0, got shape "
                             f"{tuple(weights.shape)}")
        wg = weights.detach().reshape(-1, group_size).to(grouped.dtype)  # (P, G)
        total = wg.sum(dim=1, keepdim=True)  # (P, 1)
        baseline = (wg * grouped).sum(dim=1, keepdim=True) / total.clamp(min=torch.finfo(grouped.dtype).tiny)
        baseline = torch.where((wg == wg[:, :1]).all(dim=1, keepdim=True), grouped.mean(dim=1, keepdim=True), baseline)
        adv = torch.where(total > 0, grouped - baseline, torch.zeros_like(grouped))  # (P, G)
    adv = adv.reshape(-1)  # (N,)
    return adv.clamp(min=0.0) if positive_only else adv


LOGIT_CHUNK = 1 << 25  # float32 logits made at once by `token_logprobs` (128 MiB; under autograd
# every chunk's copy is kept for the backward, so the cap bounds peak memory in no-grad calls only)


class _PickedLogSoftmax(torch.autograd.Function):
    """log_softmax(logits / temperature) at `targets`: (n, T, V), (n, T) -> (n, T), as
    `z.gather(-1, targets) - logsumexp(z)` with z = logits.float() / temperature, and the backward
    autograd derives from those operations, written as one: dL/dz = -g softmax(z) + g one_hot(targets),
    built in one (n, T, V) buffer (no dense zeros for the gather's gradient, no second buffer to add
    to it), then divided by the temperature. The same floating-point operations on the same values,
    so the same gradient bit for bit (tests/test_grpo.py), with less allocation and memory traffic."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
        z = logits.float() / temperature  # (n, T, V)
        lse = torch.logsumexp(z, dim=-1)  # (n, T)
        ctx.save_for_backward(z, lse, targets)
        ctx.temperature, ctx.dtype = temperature, logits.dtype
        return z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse  # (n, T)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, lse, targets = ctx.saved_tensors
        grad = (z - lse.unsqueeze(-1)).exp_()  # (n, T, V) softmax(z), as logsumexp's backward makes it
        grad.mul_(-g.unsqueeze(-1))  # the gradient through -logsumexp
        grad.scatter_add_(-1, targets.unsqueeze(-1), g.unsqueeze(-1))  # plus the gather's
        grad.add_(0.0)  # -0.0 -> +0.0 where g is 0, as autograd's sum with the gather's zeros makes it
        return grad.div_(ctx.temperature).to(ctx.dtype), None, None


def token_logprobs(model: torch.nn.Module, batch, temperature: float = 1.0) -> Tensor:
    """Log-probability of each completion token of `batch` given the tokens before it.

    Returns (N, T), aligned with `input_ids`: entry [i, t] is log p(x_t | x_<t) under the model's
    logits divided by `temperature` (the distribution that was sampled from, before top-p) where
    `completion_mask[i, t]` is 1, and exactly 0 elsewhere. Logits are computed only from the first
    completion column of the batch on (`logits_to_keep`), as the loss reads nothing before it, and
    turned into float32 log-probabilities `LOGIT_CHUNK` elements at a time. Gradients flow to the
    model's trainable parameters.
    """
    input_ids, attention_mask = batch.input_ids, batch.attention_mask  # (N, T), (N, T)
    mask = batch.completion_mask  # (N, T)
    N, T = input_ids.shape
    if not bool(mask[:, 0].eq(0).all()) or not bool(mask.any(dim=1).all()):
        raise ValueError("token_logprobs: every row needs a completion token, and none in column 0")
    first = int(mask.argmax(dim=1).min())  # first completion column of any row, >= 1
    keep = T - first + 1  # logits at positions first-1 .. T-1 (the last one predicts nothing)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits[:, :-1]
    targets = input_ids[:, first:]  # (N, T-first) token t is predicted at position t-1
    rows_per_chunk = max(1, LOGIT_CHUNK // max(1, logits.shape[1] * logits.shape[2]))
    parts = []
    for start in range(0, N, rows_per_chunk):
        parts.append(_PickedLogSoftmax.apply(logits[start: start + rows_per_chunk],
                                             targets[start: start + rows_per_chunk], temperature))  # (n, T-first)
    logp = torch.nn.functional.pad(torch.cat(parts), (first, 0))  # (N, T)
    return torch.where(mask.bool(), logp, torch.zeros((), dtype=logp.dtype))


def grpo_loss(logp: Tensor, advantages: Tensor, completion_mask: Tensor, max_new_tokens: int,
              batch_size: int, ref_logp: Tensor | None = None, kl_coef: float = 0.0,
              token_weight: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """On-policy Dr.GRPO loss of (a slice of) a batch, with an optional k3 KL to a reference.

    loss = sum_{i,t} mask_it * (-A_i * c_it * r_it + kl_coef * k3_it) / (batch_size * max_new_tokens),
    with r_it = exp(logp_it - stop_grad(logp_it)) (value 1, gradient that of logp: one update per
    batch) and k3_it = exp(ref_it - logp_it) - (ref_it - logp_it) - 1 >= 0. `batch_size` is the
    number of rollouts of the whole (global) batch, so slices of it sum to the whole loss.
    c_it = `token_weight` (detached; 1 when None): the truncated importance weight
    min(p_train / p_sampling, cap) that corrects for sampling from another forward than the one
    trained (as TRL's and verl's token-level TIS for the vLLM/trainer gap).

    Returns the loss and float stats: `pg_loss` and `kl_loss` (the two parts of the loss, same
    normaliser), `kl_sum` (sum of k3 over completion tokens) and `tokens` (completion tokens).
    """
    mask = completion_mask.to(logp.dtype)  # (N, T)
    norm = float(batch_size * max_new_tokens)
    ratio = torch.exp(logp - logp.detach())  # (N, T), == 1
    if token_weight is not None:
        ratio = ratio * token_weight.detach().to(logp.dtype)  # (N, T)
    pg = -(advantages.to(logp.dtype).unsqueeze(1) * ratio * mask).sum() / norm
    stats = {"pg_loss": pg.item(), "kl_loss": 0.0, "kl_sum": 0.0, "tokens": float(mask.sum().item())}
    if ref_logp is None or kl_coef == 0.0:
        return pg, stats
    diff = ref_logp.detach() - logp  # (N, T)
    k3 = (torch.exp(diff) - diff - 1.0) * mask  # (N, T)
    kl = kl_coef * k3.sum() / norm
    stats["kl_loss"] = kl.item()
    stats["kl_sum"] = k3.sum().item()
    return pg + kl, stats
