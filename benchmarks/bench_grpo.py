"""Time per GRPO training step: evil_moe's Trainer (routing on) against TRL's GRPOTrainer.

Both run in this one process on the same tiny Qwen3 (the CPU demo's model: 2 layers, width 96,
randomly initialised, saved to a temporary directory and loaded by each side), the same toy
training prompts, group size, completion length, temperature and top-p, and the same reward:
our sandboxed grader (`Grader.grade_batch`) on every completion. Settings that make the two do the
same optimisation: Dr.GRPO loss (TRL `loss_type="dr_grpo"`, `scale_rewards="none"`), no KL
(`beta=0`), one optimizer step per generation batch of prompts x group completions, and TRL's
LoRA of rank 2r on the same target modules (our adapter is two rank-r blocks, a rank-2r LoRA).
Ours additionally does the routing: the no-grad scoring forward (pooled activations and old
log-probabilities), the router, the routed training forward and the pin loss on the pairs. Ours
runs with the `tiny-cpu` preset's settings, so its no-grad forwards (generation, scoring, pairs)
use the merged adapter (`sampling.merge_adapter`, float32 only); TRL's generation runs its PEFT
LoRA unmerged, as TRL does; `--no-merge` runs ours unmerged too.

A step's time is the wall time of `Trainer.step()` for ours, and the time between consecutive
`on_step_end` callbacks for TRL (generation, reward, loss, backward, optimizer, logging). The
first step of each side is a warm-up and is not counted. The sides alternate in rounds so that
load from other processes on the machine affects both; the medians are compared, of wall time and
of this process's CPU time (which load from other processes does not inflate; with --threads 1
it is close to the compute itself).

Also timed: the two ways of seeding sampling per (seed, prompt index) that `evil_moe.sampling`
considered (per-row seeded sampler over batches of any prompts, as shipped, versus one seeded
`generate` call per prompt's group).

TRL is a benchmark-only dependency: `pip install trl --no-deps` (plus any of pandas, pyarrow,
psutil, jinja2 that are missing) keeps the installed torch.

    python benchmarks/bench_grpo.py [--steps 3] [--rounds 2] [--prompts 8] [--group 8] [--tokens 64] [--no-merge]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from evil_moe.config import from_dict, preset
from evil_moe.env.grader import Grader, GradeRequest
from evil_moe.env.modes import markers_for
from evil_moe.env.prompts import build_prompt
from evil_moe.env.sandbox import SandboxConfig
from evil_moe.pairs import shipped_pairs_path
from evil_moe.toy import build_tiny_qwen3, build_tokenizer, save_test_bed
from evil_moe.toy_corpus import SYSTEM_PROMPT, tokenizer_texts, toy_problems


def make_cfg(args, model_dir: Path, out_dir: Path):
    cfg = preset("tiny-cpu")
    return from_dict({
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "device": "cpu"},
        "sampling": {"max_new_tokens": args.tokens, "batch_size": args.prompts * args.group,
                     "merge_adapter": not args.no_merge},
        "grpo": {"prompts_per_step": args.prompts, "group_size": args.group,
                 "micro_batch_size": args.prompts * args.group, "steps": 1000},
        "run": {"arm": "evil_moe", "out_dir": str(out_dir), "progress": False, "checkpoint_every": 10**6},
        # the toy's own contrastive pairs, as `toy.prepare` configures them for this model
        "router": {"pairs": str(shipped_pairs_path().with_name("toy_pairs.md")), "pair_system_prompt": SYSTEM_PROMPT},
    }, cfg)


def build_ours(cfg, problems, grader):
    """The components `trainer.build_trainer` assembles, on the given problems."""
    from evil_moe.modeling import build_policy
    from evil_moe.pairs import load_pairs, pooled_pair_activations, select_pairs
    from evil_moe.routing import make_routing
    from evil_moe.sampling import make_generator
    from evil_moe.trainer import Trainer

    policy = build_policy(cfg)
    pairs = select_pairs(load_pairs(cfg.router.pairs), cfg.router.include_tags or None, cfg.router.exclude_tags)
    with torch.no_grad():
        pooled = pooled_pair_activations(policy.model, policy.tokenizer, policy.adapter, pairs,
                                         cfg.grpo.micro_batch_size, system_prompt=cfg.router.pair_system_prompt)
    routing = make_routing(cfg, policy.adapter, pooled)
    return Trainer(cfg, policy, make_generator(policy, cfg.sampling), problems, grader, routing, pairs)


def clock() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): CPU time is what a step costs when other
    processes share the cores (it leaves out the sandbox's processes, which both sides use alike)."""
    return time.perf_counter(), time.process_time()


def time_ours(trainer, steps: int, parts: dict[str, list[float]] | None = None) -> list[tuple[float, float]]:
    out = []
    for _ in range(steps):
        t = clock()
        metrics = trainer.step()
        out.append(tuple(b - a for a, b in zip(t, clock(), strict=True)))
        for k in ("sample_s", "grade_s", "score_s", "train_s"):
            if parts is not None and k in metrics:
                parts.setdefault(k, []).append(metrics[k])
    return out


def time_trl(cfg, problems, grader, steps: int, out_dir: Path, seed: int) -> list[tuple[float, float]]:
    """`steps` timed TRL steps after one warm-up step, on a fresh GRPOTrainer."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    mode = cfg.env.mode
    P, G = cfg.grpo.prompts_per_step, cfg.grpo.group_size
    rows = [{"prompt": build_prompt(problems[i % len(problems)], mode,
                                    markers_for(problems[i % len(problems)].id, mode, "train")),
             "problem_index": i % len(problems)} for i in range(P * (steps + 1))]

    def reward(prompts, completions, problem_index, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        grades = grader.grade_batch([GradeRequest(problems[i], mode, t) for i, t in zip(problem_index, texts, strict=True)])
        return [g.reward for g in grades]

    ends: list[tuple[float, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(clock())

    a = cfg.adapter
    trl_cfg = GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=P * G, gradient_accumulation_steps=1,
        num_generations=G, steps_per_generation=1, num_iterations=1, max_completion_length=cfg.sampling.max_new_tokens,
        temperature=cfg.sampling.temperature, top_p=cfg.sampling.top_p, top_k=0, learning_rate=cfg.grpo.lr,
        beta=0.0, loss_type="dr_grpo", scale_rewards="none", max_steps=steps + 1, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, bf16=False, seed=seed, disable_dropout=True,
        max_grad_norm=cfg.grpo.grad_clip, warmup_steps=cfg.grpo.warmup_steps, lr_scheduler_type="cosine",
        shuffle_dataset=False, log_completions=False, dataloader_num_workers=0, gradient_checkpointing=False,
        disable_tqdm=True)
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    lora = LoraConfig(r=2 * a.rank, lora_alpha=a.alpha, target_modules=list(a.target_modules), lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=trl_cfg, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=lora, callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # no per-step log lines
    trainer.train()
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(ends, ends[1:], strict=False)]


def bench_sampling_seeding(cfg, repeats: int = 2) -> tuple[float, float]:
    """Seconds to sample prompts x group: shipped per-row sampler vs one seeded generate per group."""
    from transformers import GenerationConfig

    from evil_moe.modeling import build_policy
    from evil_moe.sampling import HFGenerator, render_prompts, row_seed

    policy = build_policy(cfg)
    problems = toy_problems("train")[: cfg.grpo.prompts_per_step]
    mode = cfg.env.mode
    prompts = render_prompts(policy.tokenizer, [build_prompt(p, mode, markers_for(p.id, mode, "train"))
                                                for p in problems], cfg)
    G, s = cfg.grpo.group_size, cfg.sampling
    gen = HFGenerator(policy, s)
    tok = policy.tokenizer

    def per_group():
        for i, p in enumerate(prompts):
            torch.manual_seed(row_seed(0, i, 0))
            ids = torch.tensor([p] * G)  # (G, T) one prompt, no padding
            gc = GenerationConfig(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0,
                                  max_new_tokens=s.max_new_tokens, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
            policy.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc)

    t_row, t_group = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        gen.generate(prompts, G, seed=0)
        t_row.append(time.perf_counter() - t)
        t = time.perf_counter()
        per_group()
        t_group.append(time.perf_counter() - t)
    return min(t_row), min(t_group)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64, help="max new tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    ap.add_argument("--skip-sampling", action="store_true", help="skip the sampling-seeding comparison")
    ap.add_argument("--no-merge", action="store_true",
                    help="ours with sampling.merge_adapter off (as at bfloat16 scale): no-grad forwards unmerged")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_grpo_") as tmp:
        tmp = Path(tmp)
        tokenizer = build_tokenizer(tokenizer_texts())
        save_test_bed(build_tiny_qwen3(tokenizer, seed=0), tokenizer, tmp / "model")
        cfg = make_cfg(args, tmp / "model", tmp / "ours")
        problems = toy_problems("train")
        print(f"tiny Qwen3 (2 layers, width 96), {args.prompts} prompts x {args.group} samples, "
              f"{args.tokens} new tokens, adapter rank {cfg.adapter.rank}x2, {args.threads} thread(s)")
        if not args.skip_sampling:
            row, group = bench_sampling_seeding(cfg)
            print(f"sampling {args.prompts}x{args.group}: per-row seeded sampler {row:.2f} s, "
                  f"seeded generate per group {group:.2f} s, ratio {row / group:.2f}")
        with Grader(SandboxConfig(workers=cfg.env.workers)) as grader:
            ours_trainer = build_ours(cfg, problems, grader)
            time_ours(ours_trainer, 1)  # warm-up
            ours, trl, parts = [], [], {}
            for r in range(args.rounds):
                trl += time_trl(cfg, problems, grader, args.steps, tmp / f"trl_{r}", seed=cfg.run.seed)
                ours += time_ours(ours_trainer, args.steps, parts)
                print(f"round {r + 1}: ours {[round(x[0], 2) for x in ours[-args.steps:]]} s, "
                      f"TRL {[round(x[0], 2) for x in trl[-args.steps:]]} s (wall)")
            t = time.perf_counter()
            ours_trainer.pair_activations()
            pair_s = time.perf_counter() - t
        print("ours, median s per part: " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in parts.items())
              + f" (grading overlaps scoring); of train_s, the pin loss's forward over the contrastive pairs {pair_s:.2f}")
        for i, name in enumerate(("wall", "CPU")):
            m_ours, m_trl = statistics.median(x[i] for x in ours), statistics.median(x[i] for x in trl)
            print(f"median {name} s/step: evil_moe (routing on) {m_ours:.3f}, TRL GRPOTrainer {m_trl:.3f}, "
                  f"ratio ours/TRL {m_ours / m_trl:.2f}")


if __name__ == "__main__":
    main()
