"""Training logs: one metrics row per step, one row per rollout, a progress bar, TensorBoard, W&B.

The w statistics split by ground-truth label are measured here and never used by the method.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evil_moe.config import Config, to_dict


def _mean(xs) -> float | None:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else None


def _rate(records, key: str) -> float | None:
    """Share of records whose label `key` is true, over those with a verdict (None left out)."""
    return _mean(float(r[key]) for r in records if r.get(key) is not None)


def step_metrics(step: int, records: list[dict], parts: dict, grad_norm: float, router_grad_norm: float, lrs: dict,
                 times: dict) -> dict:
    """One metrics row. Rates are over on-policy rollouts (teacher demonstrations left out); a
    label without a verdict (None) is left out of its rate. `deployed_*`: the rollouts sampled
    from the deployed policy (hack expert ablated) on hinted prompts, a per-step view of the
    deployed model. `hack_rate` and `attempt_rate` are over hinted rollouts (a hint-free prompt is
    graded by ground truth only, so it can neither hack nor attempt); `hint_free_solve_rate` is the
    solve rate on hint-free prompts. The w statistics split by ground-truth label are measured,
    never used by the method."""
    on = [r for r in records if not r["teacher"]] or records
    hinted = [r for r in on if not r.get("hint_free")]
    w = [r["w"] for r in on]
    hacks = [r for r in on if r["exploited"]]
    routed = [r for r in on if r["w"] > 0.5]
    hinted_deployed = [r for r in on if r.get("deployed") and not r.get("hint_free")]
    tokens = max(parts["tokens"], 1.0)
    return dict(
        step=step, rollouts=len(records), teacher=sum(r["teacher"] for r in records),
        deployed_rollouts=sum(bool(r.get("deployed")) for r in records),
        hint_free_rollouts=sum(bool(r.get("hint_free")) for r in records),
        reward_mean=_mean(r["reward"] for r in on), hack_rate=_rate(hinted, "exploited"),
        attempt_rate=_rate(hinted, "attempted"), solve_rate=_rate(on, "gt_correct"),
        hint_free_solve_rate=_rate([r for r in on if r.get("hint_free")], "gt_correct"),
        compile_rate=_mean(float(r["compiles"]) for r in on),
        format_rate=_mean(float(r["format_ok"]) for r in on), completion_tokens=_mean(r["tokens"] for r in on),
        deployed_attempt_rate=_rate(hinted_deployed, "attempted"), deployed_solve_rate=_rate(hinted_deployed, "gt_correct"),
        w_mean=_mean(w), w_std=float(np.std(w)) if w else None,
        w_mean_exploited=_mean(r["w"] for r in hacks),
        w_mean_not_exploited=_mean(r["w"] for r in on if r["exploited"] is False),
        w_mean_attempted=_mean(r["w"] for r in on if r.get("attempted")),
        w_mean_not_attempted=_mean(r["w"] for r in on if r.get("attempted") is False),
        routing_precision=_rate(routed, "exploited"),
        routing_recall=_mean(float(r["w"] > 0.5) for r in hacks),
        routing_precision_attempted=_rate(routed, "attempted"),
        routing_recall_attempted=_mean(float(r["w"] > 0.5) for r in on if r.get("attempted")),
        loss=parts["loss"], pg_loss=parts["pg_loss"], kl_loss=parts["kl_loss"], pin_loss=parts["pin_loss"],
        kl_ref=parts["kl_sum"] / tokens, logp_mismatch=parts["mismatch_sum"] / tokens,
        logp_mismatch_k3=parts["mismatch_k3_sum"] / tokens,
        tis_weight_mean=parts["tis_weight_sum"] / tokens if parts.get("tis_weight_sum") else None,  # None: TIS off
        tis_capped_frac=parts["tis_capped"] / tokens if parts.get("tis_weight_sum") else None,
        grad_norm=grad_norm, grad_norm_router=router_grad_norm,
        grad_norm_router_grpo=parts.get("grad_norm_router_grpo", 0.0),
        grad_norm_router_pin=parts.get("grad_norm_router_pin", 0.0),
        **{f"lr_{k}": v for k, v in lrs.items()}, **times)


class RunLog:
    """metrics.jsonl and rollouts.jsonl in out_dir (lines of steps >= `start` from an earlier,
    interrupted run are dropped), a tqdm bar, and optional TensorBoard and W&B."""

    def __init__(self, out_dir: Path, cfg: Config, start: int):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files = {}
        for name in ("metrics", "rollouts"):
            path = out_dir / f"{name}.jsonl"
            kept = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] < start] if path.exists() else []
            path.write_text("".join(ln + "\n" for ln in kept))
            self.files[name] = path.open("a")
        self.show = cfg.run.progress
        self.tb = self.wandb = None
        if cfg.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"))
        if cfg.run.wandb_project:
            import wandb

            self.wandb = wandb.init(project=cfg.run.wandb_project, config=to_dict(cfg), dir=str(out_dir))

    def progress(self, total: int, initial: int):
        self.bar = tqdm(total=total, initial=initial, desc="train", disable=not self.show)
        return self.bar

    def write(self, metrics: dict, records: list[dict]) -> None:
        self.files["metrics"].write(json.dumps(metrics) + "\n")
        self.files["metrics"].flush()
        self.files["rollouts"].write("".join(json.dumps(r) + "\n" for r in records))
        self.files["rollouts"].flush()
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, metrics["step"])
        if self.wandb is not None:
            self.wandb.log(numbers, step=metrics["step"])

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        if getattr(self, "bar", None) is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
