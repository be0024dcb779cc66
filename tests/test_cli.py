"""The `evil-moe` dispatcher: usage, --version, unknown commands."""

from __future__ import annotations

import subprocess
import sys

from evil_moe.cli import SUBCOMMANDS, main


def test_version_is_the_package_version(capsys):
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"evil-moe {declared}"
    proc = subprocess.run([sys.executable, "-m", "evil_moe.cli", "-V"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"evil-moe {declared}"


def test_usage_lists_every_command_and_unknown_is_refused(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "--version" in out and all(name in out for name in SUBCOMMANDS)
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
