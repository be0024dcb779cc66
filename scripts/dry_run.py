"""Dry run of the paper preset: Qwen3-4B's architecture with random weights, one GRPO step, its cost.

Builds the `qwen3-4b` preset with `model.init=random` (Qwen3-4B's published architecture, full
depth unless --layers, in the preset's bfloat16, random weights, a tokenizer trained locally: no
download), then runs one GRPO step of the preset's arm with the preset's adapter, router, sampling
and optimiser, and prints peak memory and the step's time split (sample, grade, score, train).
Only the counts named on the command line differ from the preset. The random model's completions
earn no reward, so the step's gradient is zero, but every forward, backward and optimiser update
of a real step runs at the real shapes.

    python scripts/dry_run.py                                  # preset counts, 256 new tokens
    python scripts/dry_run.py --prompts 1 --group 2 --new-tokens 8 --pairs 1 --device cpu

On a GPU the first form is the measurement the README reports; on a CPU the second finishes (slowly).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from evil_moe.config import load_config
from evil_moe.env.grader import Grader
from evil_moe.pairs import shipped_pairs_path
from evil_moe.trainer import build_trainer

GIB = 1024 ** 3


def first_pairs_file(k: int, out: Path) -> Path:
    """The shipped pairs file cut after its first `k` pairs (header and format unchanged)."""
    text = shipped_pairs_path().read_text(encoding="utf-8")
    starts = [i for i in range(len(text)) if text.startswith("\n## ", i)]
    cut = starts[k] + 1 if k < len(starts) else len(text)
    out.write_text(text[:cut], encoding="utf-8")
    return out


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="qwen3-4b")
    ap.add_argument("--prompts", type=int, help="prompts per step (default: the preset's)")
    ap.add_argument("--group", type=int, help="samples per prompt (default: the preset's)")
    ap.add_argument("--new-tokens", type=int, default=256, help="max new tokens per completion")
    ap.add_argument("--pairs", type=int, help="use only the first K shipped contrastive pairs (default: all)")
    ap.add_argument("--layers", type=int, help="truncate the depth (default: the architecture's)")
    ap.add_argument("--device", help="model.device (default: the preset's, 'auto')")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="any other config override, as `evil-moe train --set`")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dry_run_") as tmp:
        sets = ["model.init=random", f"sampling.max_new_tokens={args.new_tokens}", "grpo.steps=1",
                f"run.out_dir={tmp}/run", "run.progress=false", "run.resume=false"]
        if args.prompts is not None:
            sets.append(f"grpo.prompts_per_step={args.prompts}")
        if args.group is not None:
            sets.append(f"grpo.group_size={args.group}")
        if args.pairs is not None:
            sets.append(f"router.pairs={first_pairs_file(args.pairs, Path(tmp) / 'pairs.md')}")
        if args.layers is not None:
            sets.append(f"model.num_layers={args.layers}")
        if args.device is not None:
            sets.append(f"model.device={args.device}")
        cfg = load_config(args.preset, sets=[*sets, *args.sets])
        g, s = cfg.grpo, cfg.sampling
        cuda = torch.cuda.is_available() and cfg.model.device != "cpu"
        where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
        print(f"{args.preset}, model.init=random, {cfg.model.name_or_path} architecture, "
              f"{cfg.model.num_layers or 'all'} layers, {cfg.model.dtype}; {where}; torch {torch.__version__}")
        print(f"arm {cfg.run.arm}, adapter rank {cfg.adapter.rank} x 2, {g.prompts_per_step} prompts x "
              f"{g.group_size} samples, {s.max_new_tokens} new tokens, micro-batch {g.micro_batch_size}, "
              f"gradient checkpointing {cfg.model.gradient_checkpointing}")
        t = time.perf_counter()
        with Grader(cfg.env.sandbox()) as grader:
            trainer = build_trainer(cfg, grader)
            build_s = time.perf_counter() - t
            print(f"built in {build_s:.1f} s (model, tokenizer, adapter, the pairs' first pass); "
                  f"peak RSS so far {peak_rss_gib():.2f} GiB", flush=True)
            if cuda:
                print(f"GPU memory after build: {torch.cuda.memory_allocated() / GIB:.2f} GiB allocated")
                torch.cuda.reset_peak_memory_stats()
            m = trainer.step()
        print(f"step {m['step_s']:.1f} s: sample {m['sample_s']:.1f}, grade {m['grade_s']:.1f}, "
              f"score {m.get('score_s', float('nan')):.1f}, train {m['train_s']:.1f} (route, training "
              f"forward and backward, pin loss, optimiser); grading overlaps scoring, so the parts can "
              f"sum to more than the step")
        print(f"completion tokens per rollout: mean {m['completion_tokens']:.1f}; loss {m['loss']:.4g}, "
              f"grad norm {m['grad_norm']:.3g}")
        print(f"peak RSS {peak_rss_gib():.2f} GiB")
        if cuda:
            print(f"peak GPU memory in the step: {torch.cuda.max_memory_allocated() / GIB:.2f} GiB allocated, "
                  f"{torch.cuda.max_memory_reserved() / GIB:.2f} GiB reserved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
