"""The README's "Python API" example runs as written, against a tiny run made here (issue 19)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from test_cli_train import files, sets  # noqa: F401 (files is a fixture)

from evil_moe.train_cli import main as train

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    """The first ```python block after the README's "## Python API" heading."""
    text = README.read_text()
    section = text[text.index("\n## Python API\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_example_runs(files, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    assert train(sets(files, "runs/tiny-cpu", "grpo.steps=2")) == 0  # arm none: no pairs, fast
    code = api_example()
    assert "load_policy" in code and "ablate_quarantine" in code
    printed = io.StringIO()
    namespace: dict = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), namespace)
    latest = Path("runs") / "tiny-cpu" / "checkpoints" / "step_000002"
    assert namespace["checkpoint"] == latest and namespace["router"] is None  # arm none has no router
    assert printed.getvalue().startswith(f"{latest} (arm none):\n  as trained: ")
    assert all(isinstance(namespace[k], str) for k in ("as_trained", "deployed", "base"))
