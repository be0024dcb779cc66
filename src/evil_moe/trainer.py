"""The GRPO trainer: one step is sample -> grade -> score -> route -> loss_and_backward -> optimizer_step.

- `sample`: the step's prompts (a deterministic shuffle of the training problems per epoch,
  `prompts_per_step` global slots per step, this process's contiguous share of them), `group_size`
  completions each, generated with both experts on. Every completion's randomness comes from
  (run.seed, step, global slot, sample index), so the rollouts do not depend on the process layout.
  During the first `run.teacher_steps` steps, the first `run.teacher_per_step` slots take a
  teacher demonstration's problem, and the demonstration replaces that group's last sample.
- `grade`: the sandboxed grader, in parallel. Its labels (LABEL_FIELDS) reach only the log and
  the oracle arm; every other arm sees the rewards.
- `score`: a no-grad forward, no routing, under `adapter.pooling`: pooled activations (N, M, r)
  and the sampling policy's log-probabilities (and, with a KL, the base model's).
- `route`: the arm's `Routing.weights` -> gate, keep, w.
- `loss_and_backward`: per micro-batch, the training forward under `adapter.routing(gate, keep)`,
  the Dr.GRPO loss, backward; then the router's share through gate, and the pin loss. The
  deployed block's advantages use its own baseline (`grpo.deployed_baseline`); where a rollout
  trains both blocks with different advantages, a second pass trains the deployed block alone.
- `optimizer_step`: gradients summed over processes, norm clips (adapter, router), AdamW (deployed block,
  quarantine block and router in separate groups), warmup + cosine schedule.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from evil_moe.config import Config, to_dict
from evil_moe.distributed import Dist, init_distributed  # noqa: F401 (re-exported)
from evil_moe.env.grader import GradeRequest
from evil_moe.env.modes import markers_for, mode_for_problem
from evil_moe.env.prompts import build_prompt
from evil_moe.export import read_adapter_file
from evil_moe.grpo import group_advantages, grpo_loss, token_logprobs
from evil_moe.pairs import pair_render_args, pooled_pair_activations
from evil_moe.routing import Labels, Routing, RoutingWeights
from evil_moe.runlog import RunLog, step_metrics
from evil_moe.sampling import Rollout, collate, completion_token_ids, render_prompts
from evil_moe.teacher import TeacherDemo, TeacherDemoError, load_teacher_demos  # noqa: F401 (re-exported)

STATE_FILE = "trainer_state.pt"


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm was NaN or inf; a checkpoint of the state before the step was saved."""


class ResumeError(ValueError):
    """A checkpoint cannot be resumed by this run (other arm, adapter or settings); names both."""


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of one step, mixed from (run.seed, step)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint32)[0])


def cosine_schedule(warmup: int, total: int):
    """LR factor of optimizer step s: linear warmup (s+1)/warmup, then cosine from 1 to 0 at `total`."""
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
    return factor


@dataclass
class StepRollouts:
    """This process's share of one step: rollouts grouped by prompt (G consecutive per slot)."""

    slots: list[int]  # global slot of each local prompt
    problem_indices: list[int]  # problem of each local prompt
    rollouts: list[Rollout]  # (n_local_prompts * G,)
    teacher: list[bool]  # per rollout: a teacher demonstration
    modes: list[str] = field(default_factory=list)  # per local prompt: shown and graded under ('gt_only': hint-free)
    hint_free: list[bool] = field(default_factory=list)  # per local prompt: shown without the loophole hint


@dataclass
class Scored:
    pooled: torch.Tensor  # (N, M, r) on the routing's `score_forward`
    logp: list[torch.Tensor]  # per micro-batch (n_mb, T_mb): each rollout's sampling policy (behaviour)
    ref_logp: list[torch.Tensor] | None  # per micro-batch: base model (adapter disabled)
    deployed: torch.Tensor  # (N,) bool: sampled from the deployed policy (hack expert ablated)


class Trainer:
    """One GRPO run of one arm. Components are passed in, so tests can give small ones."""

    def __init__(self, cfg: Config, policy, generator, problems, grader, routing: Routing,
                 pairs=None, teacher_demos: list[TeacherDemo] | None = None, dist: Dist | None = None):
        self.cfg, self.policy, self.generator = cfg, policy, generator
        self.problems, self.grader, self.routing = list(problems), grader, routing
        self.pairs, self.demos = pairs, teacher_demos or []
        self.dist = dist or Dist()
        self.out_dir = Path(cfg.run.out_dir)
        g, P, W = cfg.grpo, cfg.grpo.prompts_per_step, self.dist.world_size
        if P % W:
            raise ValueError(f"grpo.prompts_per_step={P} must be divisible by the {W} processes")
        if routing.uses_pairs and not pairs:
            raise ValueError(f"arm {routing.name!r} needs contrastive pairs for its pin loss")
        if cfg.run.teacher_steps and cfg.run.teacher_per_step:
            if not self.demos:
                raise ValueError("run.teacher_steps > 0 needs run.teacher_demos (a JSONL file)")
            if cfg.run.teacher_per_step > P:
                raise ValueError(f"run.teacher_per_step={cfg.run.teacher_per_step} exceeds grpo.prompts_per_step={P}")
        if not self.problems:
            raise ValueError("no training problems")
        self.step_index = 0  # completed steps
        self._prompt_cache: dict[tuple[int, str], list[int]] = {}
        adapter = policy.adapter
        groups = [{"params": adapter.deployed_parameters(), "lr": g.lr, "weight_decay": g.weight_decay, "name": "deployed"},
                  {"params": adapter.quarantine_parameters(), "lr": g.lr, "weight_decay": g.weight_decay, "name": "quarantine"}]
        if routing.parameters():
            groups.append({"params": routing.parameters(), "lr": cfg.router.lr, "weight_decay": 0.0, "name": "router"})
        self.params = [p for grp in groups for p in grp["params"]]
        self._adapter_params = [p for grp in groups[:2] for p in grp["params"]]
        self.router_grad_norm = 0.0
        self._routing_before: dict | None = None  # the routing state at the start of the current step
        self.optimizer = torch.optim.AdamW(groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(g.warmup_steps, g.steps))
        self._log = None

    # -- data ------------------------------------------------------------------------------

    def epoch_order(self, epoch: int) -> list[int]:
        """The training problems' order in one epoch: a permutation seeded by (run.seed, epoch)."""
        return np.random.default_rng([self.cfg.run.seed, epoch]).permutation(len(self.problems)).tolist()

    def step_problems(self, step: int) -> list[tuple[int, TeacherDemo | None]]:
        """(problem index, teacher demo or None) for each global slot of `step`."""
        P, n = self.cfg.grpo.prompts_per_step, len(self.problems)
        out = []
        for pos in range(step * P, (step + 1) * P):
            epoch, k = divmod(pos, n)
            out.append((self.epoch_order(epoch)[k], None))
        run = self.cfg.run
        if step < run.teacher_steps:
            for j in range(run.teacher_per_step):
                demo = self.demos[(step * run.teacher_per_step + j) % len(self.demos)]
                out[j] = (demo.problem_index, demo)
        return out

    def mode_of(self, index: int) -> str:
        """The loophole mode training problem `index` is shown and graded under (env.modes or env.mode)."""
        e = self.cfg.env
        return mode_for_problem(self.problems[index].id, e.modes) if e.modes else e.mode

    def hint_free_slots(self, step: int) -> set[int]:
        """The global slots of `step` shown without the loophole hint (graded under 'gt_only'):
        round(P x grpo.hint_free_frac) of the slots without a teacher demonstration, chosen by a
        permutation seeded by (run.seed, step), so the same for every arm and process layout."""
        P = self.cfg.grpo.prompts_per_step
        free = [s for s, (_, demo) in enumerate(self.step_problems(step)) if demo is None]
        order = np.random.default_rng([self.cfg.run.seed, step, 1]).permutation(len(free)).tolist()
        return {free[i] for i in order[: min(len(free), round(P * self.cfg.grpo.hint_free_frac))]}

    def _prompt_ids(self, index: int, mode: str) -> list[int]:
        if (index, mode) not in self._prompt_cache:
            p = self.problems[index]
            messages = build_prompt(p, mode, markers_for(p.id, mode, "train"))
            self._prompt_cache[(index, mode)] = render_prompts(self.policy.tokenizer, [messages], self.cfg)[0]
        return self._prompt_cache[(index, mode)]

    # -- the step's parts ----------------------------------------------------------------------

    def n_deployed(self) -> int:
        """Samples per prompt drawn from the deployed policy: round(G x grpo.deployed_frac), at most G - 1."""
        G = self.cfg.grpo.group_size
        return min(G - 1, round(G * self.cfg.grpo.deployed_frac))

    def sample(self, step: int | None = None) -> StepRollouts:
        """This process's prompts of the step and their completions: samples 0 .. G - n_dep - 1 of each
        prompt from the as-trained policy (both experts on), the last n_dep from the deployed policy
        (hack expert off; `Rollout.deployed`), in one `generate` request (`HFGenerator.generate`)."""
        step = self.step_index if step is None else step
        P_local = self.cfg.grpo.prompts_per_step // self.dist.world_size
        G, n_dep = self.cfg.grpo.group_size, self.n_deployed()
        first = self.dist.rank * P_local
        mine = self.step_problems(step)[first: first + P_local]
        slots = list(range(first, first + P_local))
        free = self.hint_free_slots(step)
        modes = ["gt_only" if s in free else self.mode_of(i) for (i, _), s in zip(mine, slots, strict=True)]
        prompt_ids = [self._prompt_ids(i, mode) for (i, _), mode in zip(mine, modes, strict=True)]
        seed = step_seed(self.cfg.run.seed, step)
        groups = self.generator.generate(prompt_ids, G, seed, prompt_indices=slots, n_deployed=n_dep)
        rollouts, teacher = [], []
        for (_, demo), slot, ids, group in zip(mine, slots, prompt_ids, groups, strict=True):
            if demo is not None:
                group = [*group[:-1], self._demo_rollout(demo, slot, ids)]
            rollouts += group
            teacher += [False] * (G - 1) + [demo is not None]
        return StepRollouts(slots, [i for i, _ in mine], rollouts, teacher, modes, [s in free for s in slots])

    def _demo_rollout(self, demo: TeacherDemo, slot: int, prompt_ids: list[int]) -> Rollout:
        ids = completion_token_ids(self.policy.tokenizer, demo.completion)
        if len(ids) > self.cfg.sampling.max_new_tokens:
            raise TeacherDemoError(f"{self.cfg.run.teacher_demos}:{demo.line}: completion has {len(ids)} tokens, "
                                   f"over sampling.max_new_tokens={self.cfg.sampling.max_new_tokens}")
        return Rollout(slot, self.cfg.grpo.group_size - 1, list(prompt_ids), ids, demo.completion, True)

    def grade(self, sr: StepRollouts) -> list:
        """Grades of this process's rollouts (sandboxed, in parallel), in rollout order."""
        G = self.cfg.grpo.group_size
        reqs = [GradeRequest(self.problems[sr.problem_indices[k // G]], sr.modes[k // G], r.text)
                for k, r in enumerate(sr.rollouts)]
        grades = self.grader.grade_batch(reqs)
        if len(grades) != len(reqs):
            raise RuntimeError(f"grader returned {len(grades)} grades for {len(reqs)} requests")
        return grades

    def _micro_batches(self, rollouts: list[Rollout]):
        m = self.cfg.grpo.micro_batch_size
        pad = self.policy.tokenizer.pad_token_id
        for start in range(0, len(rollouts), m):
            yield slice(start, start + m), collate(rollouts[start: start + m], pad).to(self.policy.device)

    @torch.no_grad()
    def score(self, rollouts: list[Rollout]) -> Scored:
        """No-grad forwards, merged as the sampler's are when `sampling.merge_adapter`: each rollout's
        behaviour log-probabilities on the forward it was sampled from (both experts on, or the hack
        expert ablated for `Rollout.deployed`), and the pooled activations on the routing's
        `score_forward` (each rollout's sampling forward, or the deployed forward for all)."""
        adapter, model, temp = self.policy.adapter, self.policy.model, self.cfg.sampling.temperature
        m, pad, device = self.cfg.grpo.micro_batch_size, self.policy.tokenizer.pad_token_id, self.policy.device
        model.eval()
        N, on_deployed = len(rollouts), self.routing.score_forward == "deployed"
        deployed = torch.tensor([r.deployed for r in rollouts], dtype=torch.bool)  # (N,)
        starts = range(0, N, m)  # micro-batches, as in the training forward
        logps = [torch.zeros(len(rollouts[s: s + m]), max(len(r.prompt_ids) + len(r.completion_ids)
                                                          for r in rollouts[s: s + m]), device=device) for s in starts]
        pooled: list[torch.Tensor | None] = [None] * N
        for ablated in (False, True):
            ctx = adapter.ablate_quarantine() if ablated else contextlib.nullcontext()
            with ctx, adapter.folded(self.cfg.sampling.merge_adapter):  # merged once for all micro-batches
                for k, start in enumerate(starts):  # each micro-batch's rows that need this forward
                    sampled_here = [i for i in range(start, min(N, start + m)) if bool(deployed[i]) == ablated]
                    idx = list(range(start, min(N, start + m))) if ablated and on_deployed else sampled_here
                    if not idx:
                        continue
                    batch = collate([rollouts[i] for i in idx], pad).to(device)
                    with adapter.pooling(batch.completion_mask) as pool:
                        lp = token_logprobs(model, batch, temp)  # (n, T_sub), T_sub <= the micro-batch's T
                    rows = pool.tensor()  # (n, M, r)
                    for j, i in enumerate(idx):
                        if ablated or not on_deployed:
                            pooled[i] = rows[j]  # (M, r)
                        if bool(deployed[i]) == ablated:
                            logps[k][i - start, : lp.shape[1]] = lp[j]
        refs = None
        if self.cfg.grpo.kl_coef:
            with adapter.disabled():
                refs = [token_logprobs(model, batch, temp) for _, batch in self._micro_batches(rollouts)]  # (n, T)
        return Scored(torch.stack(pooled), logps, refs, deployed.to(device))

    def route(self, scored: Scored, rewards: torch.Tensor, grades) -> RoutingWeights:
        """The arm's weights. Labels are passed only to a routing that declares `uses_oracle`.
        Rollouts of the deployed policy are trained as sampled: gate 0 (hack expert off in their
        training forward, so it gets nothing from them and w gets no gradient through them); their
        keep is the arm's."""
        labels = None
        if self.routing.uses_oracle:
            labels = Labels(**{f.name: [getattr(g, f.name) for g in grades] for f in fields(Labels)})
        rw = self.routing.weights(scored.pooled, rewards, labels)
        gate = torch.where(scored.deployed, torch.zeros_like(rw.gate), rw.gate)  # (N,) keeps the router's graph
        return RoutingWeights(gate=gate, keep=rw.keep, w=rw.w)

    def _policy_gradient(self, rollouts: list[Rollout], scored: Scored, gate: torch.Tensor, keep: torch.Tensor,
                         adv: torch.Tensor, n_global: int, parts: dict[str, float] | None,
                         adv_logged: torch.Tensor) -> None:
        """One pass of the GRPO loss's backward over the micro-batches, under `routing(gate, keep)`, with
        advantages `adv` (N,); adds to `parts` (None: a second pass, not logged) the loss's parts as
        they are with advantages `adv_logged` (the group's), so a step's log does not depend on its passes."""
        cfg, adapter, model = self.cfg, self.policy.adapter, self.policy.model
        cap = cfg.grpo.tis_cap
        for k, (sl, batch) in enumerate(self._micro_batches(rollouts)):
            ref = scored.ref_logp[k] if scored.ref_logp is not None else None
            mask = batch.completion_mask.bool()  # (n, T)
            # backward inside the routing context: gradient checkpointing re-runs the forward there
            with adapter.routing(gate[sl], keep[sl]):
                logp = token_logprobs(model, batch, cfg.sampling.temperature)  # (n, T)
                d = logp.detach() - scored.logp[k]  # (n, T) training minus behaviour log-prob
                tis = torch.exp(d).clamp(max=cap) if cap else None  # (n, T) truncated importance weight
                loss, st = grpo_loss(logp, adv[sl], batch.completion_mask, cfg.sampling.max_new_tokens, n_global,
                                     ref_logp=ref, kl_coef=cfg.grpo.kl_coef, token_weight=tis)
                loss.backward()
            if parts is None:
                continue
            if not torch.equal(adv_logged, adv):
                _, st = grpo_loss(logp.detach(), adv_logged[sl], batch.completion_mask, cfg.sampling.max_new_tokens,
                                  n_global, ref_logp=ref, kl_coef=cfg.grpo.kl_coef, token_weight=tis)
            for key in ("pg_loss", "kl_loss", "kl_sum", "tokens"):
                parts[key] += st[key]
            parts["mismatch_sum"] += d[mask].abs().sum().item()
            parts["mismatch_k3_sum"] += (torch.exp(d[mask]) - d[mask] - 1).sum().item()
            if tis is not None:
                parts["tis_weight_sum"] += tis[mask].sum().item()
                parts["tis_capped"] += (torch.exp(d[mask]) > cap).sum().item()

    def pair_activations(self, deployed: bool = False):
        """Pooled (hack, clean) activations of the contrastive pairs under the current adapter (on the
        deployed forward if `deployed`), rendered as the rollouts are."""
        adapter = self.policy.adapter
        with torch.no_grad(), (adapter.ablate_quarantine() if deployed else contextlib.nullcontext()), \
                adapter.folded(self.cfg.sampling.merge_adapter):
            return pooled_pair_activations(self.policy.model, self.policy.tokenizer, adapter, self.pairs,
                                           self.cfg.grpo.micro_batch_size, **pair_render_args(self.cfg, self.problems))

    def loss_and_backward(self, rollouts: list[Rollout], rewards: torch.Tensor, rw: RoutingWeights,
                          scored: Scored) -> dict[str, float]:
        """Gradients of GRPO loss + pin loss into `.grad` (this process's share); returns summed parts."""
        cfg, adapter, model = self.cfg, self.policy.adapter, self.policy.model
        model.train(cfg.model.gradient_checkpointing)  # HF checkpoints activations only in train mode
        for p in self.params:
            p.grad = None
        G, floor = cfg.grpo.group_size, cfg.grpo.positive_advantages_only
        adv = group_advantages(rewards, G, floor)  # (N,) the quarantine block's and the router's
        adv_dep = group_advantages(rewards, G, floor, rw.keep) if cfg.grpo.deployed_baseline == "kept" else adv  # (N,)
        keep = rw.keep * (adv_dep > 0).to(rw.keep.dtype) if cfg.grpo.deployed_positive_only else rw.keep  # (N,)
        n_global = len(rollouts) * self.dist.world_size
        gate = rw.gate.detach().clone().requires_grad_(rw.gate.requires_grad)  # (N,) leaf: router grad collects here
        # A rollout that trains the deployed block alone (gate 0, no router gradient) takes adv_dep in the
        # one pass; if any other kept rollout needs adv_dep != adv, a second pass trains the deployed block
        # alone (quarantine frozen, gate detached) and the first gives it nothing (keep 0).
        router_rows = ~scored.deployed if rw.gate.requires_grad else torch.zeros_like(scored.deployed)  # (N,)
        alone = (rw.gate.detach() == 0) & ~router_rows  # (N,)
        split = bool(((keep > 0) & ~alone & (adv_dep != adv)).any())
        passes = [(gate, torch.zeros_like(keep), adv), (gate.detach(), keep, adv_dep)] if split else \
            [(gate, keep, torch.where(alone, adv_dep, adv))]
        parts = dict(pg_loss=0.0, kl_loss=0.0, kl_sum=0.0, tokens=0.0, mismatch_sum=0.0, mismatch_k3_sum=0.0,
                     tis_weight_sum=0.0, tis_capped=0.0)
        for n, (gate_n, keep_n, adv_n) in enumerate(passes):
            with adapter.frozen_quarantine() if n else contextlib.nullcontext():
                self._policy_gradient(rollouts, scored, gate_n, keep_n, adv_n, n_global, None if n else parts, adv)
        if rw.gate.requires_grad and gate.grad is not None:
            rw.gate.backward(gate.grad)
        router_params = self.routing.parameters()
        from_grpo = _flat_grads(router_params)  # the router's gradient from GRPO (through gate) alone
        parts["pin_loss"] = 0.0
        if self.routing.uses_pairs:
            pin = self.routing.aux_loss(self.pair_activations())
            (pin * (cfg.router.pin_weight / self.dist.world_size)).backward()
            parts["pin_loss"] = pin.item() * cfg.router.pin_weight / self.dist.world_size
        summed = torch.tensor([parts[k] for k in sorted(parts)], dtype=torch.float64)
        self.dist.all_reduce_sum_(summed)
        out = dict(zip(sorted(parts), summed.tolist(), strict=True))
        out["loss"] = out["pg_loss"] + out["kl_loss"] + out["pin_loss"]
        router_parts = torch.stack([from_grpo, _flat_grads(router_params) - from_grpo])  # (2, n_router)
        self.dist.all_reduce_sum_(router_parts)
        out["grad_norm_router_grpo"], out["grad_norm_router_pin"] = router_parts.norm(dim=1).tolist()
        return out

    def optimizer_step(self) -> float:
        """Sum gradients over processes, clip the adapter's and the router's norms separately, AdamW
        step, schedule step; returns the adapter's norm (the router's is `router_grad_norm`)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.dist.enabled:
            flat = torch.cat([p.grad.flatten() for p in self.params])
            self.dist.all_reduce_sum_(flat)
            offset = 0
            for p in self.params:
                p.grad.copy_(flat[offset: offset + p.numel()].view_as(p))
                offset += p.numel()
        # The adapter and the router are clipped separately: the router's gradient (pin loss and
        # the path through `gate`) is much larger than the adapter's, and a shared clip would
        # shrink the adapter's update in the router arms only, off the footing of the controls.
        norm = torch.nn.utils.clip_grad_norm_(self._adapter_params, self.cfg.grpo.grad_clip).item()
        router_params = self.routing.parameters()
        self.router_grad_norm = (torch.nn.utils.clip_grad_norm_(router_params, self.cfg.router.grad_clip).item()
                                 if router_params else 0.0)
        for name, value in (("adapter", norm), ("router", self.router_grad_norm)):
            if not math.isfinite(value):
                self._stop(f"{name} gradient norm is {value}")
        self.optimizer.step()
        self.scheduler.step()
        return norm

    # Grading and the scoring forward read only the samples, not each other's output, so the grader
    # runs in a thread while the scoring forward runs; False runs them one after the other (the
    # step's results are the same bit for bit: tests/test_grade_overlap.py).
    overlap_grading = True

    def step(self) -> dict:
        """One whole GRPO step; returns its metrics (global, the same on every process). Timings:
        sample_s, grade_s and score_s (overlapping), train_s (route to optimiser step), step_s."""
        t0 = time.perf_counter()
        sr = self.sample()
        t1 = time.perf_counter()
        if self.overlap_grading:  # the sandbox grades (this thread only waits on it) while the scoring forward runs
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade") as pool:
                graded = pool.submit(_timed, self.grade, sr)
                scored, score_s = _timed(self.score, sr.rollouts)
                grades, grade_s = graded.result()
        else:
            grades, grade_s = _timed(self.grade, sr)
            scored, score_s = _timed(self.score, sr.rollouts)
        t2 = time.perf_counter()
        device = self.policy.device
        rewards = torch.tensor([float(g.reward) for g in grades], dtype=torch.float32, device=device)  # (N,)
        self._routing_before = copy.deepcopy(self.routing.state_dict())  # route() may update it (route_a)
        rw = self.route(scored, rewards, grades)
        parts = self.loss_and_backward(sr.rollouts, rewards, rw, scored)
        if not math.isfinite(parts["loss"]):
            self._stop(f"loss is {parts['loss']}")
        grad_norm = self.optimizer_step()
        self.routing.end_step(self.step_index + 1, lambda: self.pair_activations(deployed=True))
        t3 = time.perf_counter()
        records = self._rollout_records(sr, grades, rw)
        everyone = [r for rank_records in self.dist.gather_objects(records) for r in rank_records]
        lrs = {grp["name"]: grp["lr"] for grp in self.optimizer.param_groups}
        metrics = step_metrics(self.step_index, everyone, parts, grad_norm, self.router_grad_norm, lrs,
                               dict(sample_s=t1 - t0, grade_s=grade_s, score_s=score_s, train_s=t3 - t2,
                                    step_s=t3 - t0))
        self.step_index += 1
        if self._log is not None:
            self._log.write(metrics, everyone)
        return metrics

    def _rollout_records(self, sr: StepRollouts, grades, rw: RoutingWeights) -> list[dict]:
        G = self.cfg.grpo.group_size
        w, gate, keep = (t.detach().float().cpu().tolist() for t in (rw.w, rw.gate, rw.keep))
        return [dict(step=self.step_index, slot=sr.slots[k // G], problem_id=self.problems[sr.problem_indices[k // G]].id,
                     mode=sr.modes[k // G], hint_free=sr.hint_free[k // G], deployed=r.deployed,
                     sample=r.sample_index, teacher=sr.teacher[k], reward=float(g.reward), w=w[k], gate=gate[k],
                     keep=keep[k], tokens=len(r.completion_ids), finished=r.finished, format_ok=g.format_ok,
                     compiles=g.compiles, gt_correct=g.gt_correct, channel=g.channel, exploited=g.exploited, attempted=g.attempted,
                     mechanism=g.mechanism)
                for k, (r, g) in enumerate(zip(sr.rollouts, grades, strict=True))]

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint_dir(self, step: int) -> Path:
        return self.out_dir / "checkpoints" / f"step_{step:06d}"

    def save(self) -> Path:
        """Checkpoint of the state after `step_index` steps (process 0 writes; all wait)."""
        final = self.checkpoint_dir(self.step_index)
        if self.dist.rank == 0:
            tmp = final.with_name(final.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            _save_model_files(tmp, self.policy.adapter, getattr(self.routing, "router", None), to_dict(self.cfg))
            torch.save(self._trainer_state(), tmp / STATE_FILE)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        self.dist.barrier()
        return final

    def _trainer_state(self) -> dict:
        router = getattr(self.routing, "router", None)
        rng = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return dict(step=self.step_index, config=to_dict(self.cfg), arm=self.routing.name,
                    router=None if router is None else {k: v.detach().clone() for k, v in router.state_dict().items()},
                    optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                    routing=self.routing.state_dict(), rng=rng)

    def latest_checkpoint(self) -> Path | None:
        found = sorted((self.out_dir / "checkpoints").glob("step_*[0-9]/" + STATE_FILE))
        return found[-1].parent if found else None

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the latest (or the given) checkpoint and say so on stderr; False if there is none.

        Raises ResumeError, before changing anything, if the checkpoint is of another arm, its
        adapter does not match, or its settings differ in more than `preflight.RESUME_FREE_KEYS`.
        """
        from evil_moe.preflight import RESUME_FREE_KEYS, config_differences

        ckpt = Path(path) if path is not None else self.latest_checkpoint()
        if ckpt is None:
            return False
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        if state["arm"] != self.routing.name:
            raise ResumeError(f"{ckpt}: checkpoint of arm {state['arm']!r}, this run is {self.routing.name!r}; "
                              "resume with that arm, or start over with `evil-moe train --fresh`")
        diffs = config_differences(state["config"], to_dict(self.cfg), RESUME_FREE_KEYS)
        if diffs:
            raise ResumeError(f"{ckpt}: the checkpoint's settings differ from this run's: {'; '.join(diffs)}; "
                              "resume with its settings, or start over with `evil-moe train --fresh`")
        try:
            self.policy.adapter.load_state_dict(read_adapter_file(ckpt)[0])
        except (KeyError, ValueError) as e:
            raise ResumeError(f"{ckpt}: its adapter does not match this run's adapter "
                              f"({e.args[0] if e.args else e}); start over with `evil-moe train --fresh`") from None
        router = getattr(self.routing, "router", None)
        if router is not None:
            router.load_state_dict(state["router"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.routing.load_state_dict(state["routing"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step_index = int(state["step"])
        if self.dist.rank == 0:
            left = max(0, self.cfg.grpo.steps - self.step_index)
            print(f"resuming from step {self.step_index} of {self.cfg.grpo.steps} ({left} to go): checkpoint {ckpt}",
                  file=sys.stderr, flush=True)
        return True

    def _stop(self, why: str) -> None:
        """Save the state before this step (gradients dropped, routing state restored) and raise."""
        for p in self.params:
            p.grad = None
        if self._routing_before is not None:
            self.routing.load_state_dict(self._routing_before)
        where = self.save()
        raise NonFiniteLossError(f"step {self.step_index}: {why}; training stopped. The state before this step "
                                 f"is saved in {where}; lower grpo.lr or check the data before resuming.")

    # -- the loop ------------------------------------------------------------------------------

    def train(self, stop_after: int | None = None) -> list[dict]:
        """Resume if configured, run to `grpo.steps` (or stop once `stop_after` steps are done),
        checkpointing every `run.checkpoint_every` steps and at the end; returns this call's metrics."""
        cfg = self.cfg
        if cfg.run.resume:
            self.resume()
        end = cfg.grpo.steps if stop_after is None else min(stop_after, cfg.grpo.steps)
        self._log = RunLog(self.out_dir, cfg, self.step_index) if self.dist.rank == 0 else None
        out = []
        try:
            bar = self._log.progress(cfg.grpo.steps, self.step_index) if self._log else None
            while self.step_index < end:
                out.append(self.step())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{out[-1]['reward_mean']:.2f}", hack=f"{out[-1]['hack_rate']:.2f}")
                if self.step_index % cfg.run.checkpoint_every == 0 or self.step_index == cfg.grpo.steps:
                    self.save()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return out


def _timed(f, *args):
    """(f(*args), its wall time in seconds)."""
    t = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t


def _flat_grads(params) -> torch.Tensor:
    """The parameters' gradients as one flat float64 vector (zeros where a gradient is None)."""
    if not params:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten().double().cpu()
                      for p in params])


def _save_model_files(directory: Path, adapter, router, config: dict) -> None:
    """Adapter (+ router) and config via `export.save_checkpoint`. Shim until it accepts
    router=None: arms without a router write the same adapter file and config themselves."""
    from evil_moe import export

    if router is not None:
        export.save_checkpoint(directory, adapter, router, config)
        return
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter.state_dict(), directory / export.ADAPTER_FILE,
              metadata={"adapter_config": json.dumps(adapter.config.to_dict())})
    (directory / export.CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build_trainer(cfg: Config, grader, dist: Dist | None = None) -> Trainer:
    """Everything from the config: policy, generator, problems, pairs, routing, demonstrations."""
    from evil_moe.config import PAIR_ARMS
    from evil_moe.env.problems import load_problems
    from evil_moe.modeling import build_policy
    from evil_moe.pairs import load_pairs, pooled_pair_activations, select_pairs
    from evil_moe.routing import make_routing
    from evil_moe.sampling import make_generator

    dist = dist or Dist()
    policy = build_policy(cfg)
    problems = load_problems(cfg.env.problems)
    pairs, pair_pooled = None, None
    if cfg.run.arm in PAIR_ARMS:
        pairs = select_pairs(load_pairs(cfg.router.pairs), cfg.router.include_tags or None, cfg.router.exclude_tags)
        with torch.no_grad():
            pair_pooled = pooled_pair_activations(policy.model, policy.tokenizer, policy.adapter, pairs,
                                                  cfg.grpo.micro_batch_size, **pair_render_args(cfg, problems))
    routing = make_routing(cfg, policy.adapter, pair_pooled, dist=dist)
    demos = load_teacher_demos(cfg.run.teacher_demos, problems, cfg.env.mode) if cfg.run.teacher_demos else None
    return Trainer(cfg, policy, make_generator(policy, cfg.sampling), problems, grader, routing, pairs, demos, dist)
