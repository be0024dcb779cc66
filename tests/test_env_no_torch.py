"""The environment package never imports torch: the grader must stay cheap to import and run."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import evil_moe.env


def test_env_modules_do_not_import_torch():
    names = sorted(f"evil_moe.env.{m.name}" for m in pkgutil.iter_modules(evil_moe.env.__path__))
    assert {"evil_moe.env.grader", "evil_moe.env.sandbox", "evil_moe.env.check"} <= set(names)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
