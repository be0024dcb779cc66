"""`evil-moe train`: GRPO training of one arm, configured by a preset, a YAML file and --set pairs.

The configuration is resolved and checked before anything heavy loads; an unknown key or a value
of the wrong type exits with status 2 and a message naming the key. Several processes: launch with
`torchrun --nproc-per-node N -m evil_moe.cli train ...` (gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from evil_moe.config import PRESETS, ConfigError, help_text, load_config, to_dict


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evil-moe train", description="GRPO training with one experimental arm "
                                "(run.arm: evil_moe, random_router, route_a, none, oracle).")
    p.add_argument("--preset", choices=PRESETS, default="qwen3-4b", help="starting configuration")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML overrides, applied after the preset")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="one override, e.g. --set run.arm=route_a --set grpo.steps=50 (repeatable)")
    p.add_argument("--help-config", action="store_true", help="print every config key with its value and help, then exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args.preset, args.config, args.sets)
    except ConfigError as e:
        print(f"evil-moe train: {e}", file=sys.stderr)
        return 2
    if args.help_config:
        print(help_text(cfg))
        return 0

    import torch  # heavy imports only after the config is known to be valid

    from evil_moe.env.grader import Grader
    from evil_moe.trainer import NonFiniteLossError, build_trainer, init_distributed

    dist = init_distributed()
    out_dir = Path(cfg.run.out_dir)
    if cfg.model.name_or_path == "toy":
        try:
            from evil_moe.toy import prepare
        except ImportError as e:
            print(f"evil-moe train: model.name_or_path='toy' needs evil_moe.toy.prepare ({e})", file=sys.stderr)
            return 2
        for rank in range(dist.world_size):  # one process at a time writes or reuses the toy files
            if rank == dist.rank:
                cfg = prepare(cfg, out_dir / "toy")
            dist.barrier()
    if dist.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    try:
        with Grader(cfg.env.sandbox()) as grader:
            build_trainer(cfg, grader, dist).train()
    except NonFiniteLossError as e:
        print(f"evil-moe train: {e}", file=sys.stderr)
        return 3
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
