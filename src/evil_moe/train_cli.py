"""`evil-moe train`: GRPO training of one arm, configured by a preset, a YAML file and --set pairs.

The configuration is resolved and checked before anything is written or any model loads (see
`evil_moe.preflight`): an unknown key, an impossible value, a missing file, a missing optional
package, a hub model that cannot be reached, overlapping training and evaluation problems, or a
checkpoint in run.out_dir whose settings differ from this run's exits with status 2 and a message
naming the key. Every local path is recorded absolute. An existing checkpoint is resumed (announced
on stderr); `--fresh` (= run.resume=false) deletes the run's checkpoints and logs and starts at
step 0. Several processes: launch with `torchrun --nproc-per-node N -m evil_moe.cli train ...`
(gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from evil_moe import preflight
from evil_moe.config import (
    ARMS,
    PRESETS,
    Config,
    ConfigError,
    from_dict,
    help_text,
    load_config,
    preset,
    to_dict,
)

# The keys evil_moe.toy.prepare points at the files it builds (model.name_or_path='toy').
TOY_KEYS = ("model.name_or_path", "env.problems", "eval.problems", "router.pairs", "router.pair_system_prompt")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evil-moe train", description="GRPO training with one experimental arm "
                                f"(run.arm: {', '.join(ARMS)}).")
    p.add_argument("--preset", choices=PRESETS, default="qwen3-4b", help="starting configuration")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML overrides, applied after the preset")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="one override, e.g. --set run.arm=route_a --set grpo.steps=50 (repeatable); a list "
                        "is written [a,b], e.g. --set adapter.target_modules=[q_proj,v_proj]")
    p.add_argument("--fresh", action="store_true",
                   help="start at step 0 (= --set run.resume=false): deletes run.out_dir's checkpoints, "
                        "metrics.jsonl, rollouts.jsonl and tb/ first. Without it an existing checkpoint is "
                        "resumed, and refused if the settings differ in more than grpo.steps")
    p.add_argument("--help-config", action="store_true", help="print every config key with its value and help, then exit")
    return p


def _explicit(cfg: Config, preset_name: str, keys: tuple[str, ...]) -> dict:
    """{section: {name: value}} of the `keys` whose value differs from the preset's."""
    base, out = preset(preset_name), {}
    for key in keys:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) != getattr(getattr(base, section), name):
            out.setdefault(section, {})[name] = getattr(getattr(cfg, section), name)
    return out


def preflight_checks(cfg: Config) -> None:
    """Everything checked before anything is written or loaded (ConfigError naming the key)."""
    toy = cfg.model.name_or_path == "toy"
    preflight.check_optional_packages(cfg)
    preflight.check_files(cfg)
    if getattr(cfg.model, "init", "pretrained") == "pretrained":  # a random init builds its base locally
        preflight.check_model_source(cfg.model.name_or_path)
    if not toy:  # the toy's problem files do not exist yet: checked after toy.prepare
        preflight.check_overlap(cfg)
    preflight.check_resume(cfg, ignore=TOY_KEYS if toy else ())


def start_fresh(out_dir: Path) -> None:
    """Delete a run directory's checkpoints and logs (not its toy/ test bed), saying so."""
    old = [out_dir / n for n in ("checkpoints", "metrics.jsonl", "rollouts.jsonl", "tb", "config.yaml")]
    old = [p for p in old if p.exists()]
    if old:
        print(f"evil-moe train: --fresh: deleting {', '.join(str(p) for p in old)}", file=sys.stderr)
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args.preset, args.config, args.sets + (["run.resume=false"] if args.fresh else []))
        if args.help_config:
            print(help_text(cfg))
            return 0
        cfg = preflight.absolute_paths(cfg)
        user_problems = _explicit(cfg, args.preset, ("env.problems", "eval.problems"))
        preflight_checks(cfg)
    except ConfigError as e:
        print(f"evil-moe train: {e}", file=sys.stderr)
        return 2

    import torch  # heavy imports only after the config is known to be valid

    from evil_moe.env.grader import Grader
    from evil_moe.trainer import NonFiniteLossError, ResumeError, build_trainer, init_distributed

    if not cfg.run.progress:
        preflight.quiet_loading()
    dist = init_distributed()
    out_dir = Path(cfg.run.out_dir)
    if not cfg.run.resume and dist.rank == 0:
        start_fresh(out_dir)
    if cfg.model.name_or_path == "toy":
        from evil_moe.toy import prepare

        for rank in range(dist.world_size):  # one process at a time writes or reuses the toy files
            if rank == dist.rank:
                cfg = prepare(cfg, out_dir / "toy", progress=cfg.run.progress)
            dist.barrier()
        cfg = preflight.absolute_paths(from_dict(user_problems, cfg))  # the user's own problems, if given
        try:
            preflight.check_overlap(cfg)
            preflight.check_resume(cfg)
        except ConfigError as e:
            print(f"evil-moe train: {e}", file=sys.stderr)
            return 2
    if dist.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    try:
        with Grader(cfg.env.sandbox(), cfg.env.limit_config()) as grader:
            build_trainer(cfg, grader, dist).train()
    except ResumeError as e:
        print(f"evil-moe train: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"evil-moe train: {e}", file=sys.stderr)
        return 3
    finally:
        if dist.enabled:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
