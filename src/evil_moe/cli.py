"""The `evil-moe` command: a thin dispatcher to each subcommand's own `main(argv)`.

Each subcommand parses its own arguments, so its help text lives beside its code.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "grade": ("evil_moe.env.grade_cli", "grade responses in the sandbox (JSONL in, JSONL out)"),
    "check-env": ("evil_moe.env.check", "validate the grader on a problem file (canonical, wrong, hacks)"),
    "train": ("evil_moe.train_cli", "GRPO training with one experimental arm"),
    "eval": ("evil_moe.evaluate", "deployment-ablation evaluation of a checkpoint"),
    "compare": ("evil_moe.compare", "arms and seeds side by side: effects beside controls, paired differences, power"),
    "relearn": ("evil_moe.relearn", "the relearning test: GRPO again on the deployed model, steps to regain half"),
    "export-peft": ("evil_moe.export", "export the deployed model as a PEFT LoRA adapter"),
    "demo": ("evil_moe.demo", "the whole experiment on a laptop CPU"),
}


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    from importlib.metadata import version as installed_version

    return installed_version("evil-moe")


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: evil-moe [--version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    lines += ["", "Run `evil-moe COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"evil-moe {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"evil-moe: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
