"""`evil-moe eval` as a new user meets it (issue 19): a moved checkpoint still evaluates from any
directory, a run directory is accepted (the checkpoint picked is named), the markers are said,
overlapping problems are refused or stated, and errors come before any model loads."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_cli_train import files, sets  # noqa: F401 (files is a fixture)

from evil_moe.cli import main as cli
from evil_moe.export import CONFIG_FILE
from evil_moe.train_cli import main as train

FAST = ["--no-progress", "--states", "as_trained", "deployed", "--samples-per-problem", "1"]


@pytest.fixture(scope="module")
def run_dir(files, tmp_path_factory):  # noqa: F811
    """A 2-step run trained from a working directory with relative paths."""
    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        args = [a.replace(str(files), os.path.relpath(files, work))
                for a in sets(files, "runs/r", "grpo.steps=2")]
        assert train(args) == 0
    return work / "runs" / "r"


def test_a_moved_checkpoint_evaluates_from_another_directory(run_dir, tmp_path, monkeypatch, capsys):
    moved = tmp_path / "elsewhere" / "ckpt"
    shutil.copytree(run_dir / "checkpoints" / "step_000002", moved)
    monkeypatch.chdir(tmp_path)
    assert cli(["eval", str(moved), "--out", "ev", *FAST]) == 0
    out = capsys.readouterr().out
    assert "markers: train (eval.markers: the training markers, on held-out problems)" in out
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["checkpoint"] == str(moved) and results["eval"]["markers"] == "train"
    assert results["eval"]["training_problems_evaluated"] == 0


def test_a_run_directory_is_evaluated_at_its_latest_checkpoint_which_is_named(run_dir, tmp_path, capsys):
    assert cli(["eval", str(run_dir), "--out", str(tmp_path / "ev"), *FAST]) == 0
    captured = capsys.readouterr()
    latest = run_dir / "checkpoints" / "step_000002"
    assert f"{run_dir} is a run directory: evaluating its latest checkpoint {latest} (of 2)" in captured.err
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["checkpoint"] == str(latest)


def test_training_problems_are_refused_unless_allowed_and_then_stated(run_dir, files, tmp_path, capsys):  # noqa: F811
    ckpt = str(run_dir / "checkpoints" / "step_000002")
    assert cli(["eval", ckpt, "--out", str(tmp_path / "no"), "--problems", str(files / "train.jsonl"), *FAST]) == 2
    assert "2 of its 2 problems are training problems" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert cli(["eval", ckpt, "--out", str(tmp_path / "yes"), "--problems", str(files / "train.jsonl"),
                "--set", "eval.allow_overlap=true", *FAST]) == 0
    results = json.loads((tmp_path / "yes" / "results.json").read_text())
    assert results["eval"]["training_problems_evaluated"] == 2
    assert results["eval"]["problems_are_training_problems"] is True
    assert "2 of the 2 evaluation problems are training problems" in (tmp_path / "yes" / "report.md").read_text()


def test_a_base_model_that_is_not_there_is_named_before_loading_and_can_be_repointed(run_dir, files, tmp_path,  # noqa: F811
                                                                                    capsys):
    ckpt = tmp_path / "old"
    shutil.copytree(run_dir / "checkpoints" / "step_000002", ckpt)
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["model"]["name_or_path"] = "runs/u_evil/toy/base"  # relative, as main recorded it
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    assert cli(["eval", str(ckpt), *FAST]) == 2
    err = capsys.readouterr().err
    assert "'model.name_or_path': runs/u_evil/toy/base is not a directory" in err
    assert "--set model.name_or_path=" in err and "Traceback" not in err
    assert not (ckpt / "eval").exists()
    assert cli(["eval", str(ckpt), "--set", f"model.name_or_path={files / 'base'}", *FAST]) == 0
    assert (ckpt / "eval" / "results.json").is_file()


def test_no_progress_silences_the_loading_bars_and_help_states_the_true_default(run_dir, tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    try:
        assert cli(["eval", str(run_dir), "--out", str(tmp_path / "ev"), *FAST]) == 0
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
        from huggingface_hub.utils import enable_progress_bars
        enable_progress_bars()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: eval.samples_per_problem of the checkpoint's config)" in text
    assert "default 10" not in text and "or a run directory RUN" in text


def test_compare_names_the_checkpoint_it_picks_and_refuses_mixed_lengths(run_dir, tmp_path, capsys):
    for step in ("step_000001", "step_000002"):
        assert cli(["eval", str(run_dir / "checkpoints" / step), *FAST]) == 0
    capsys.readouterr()
    assert cli(["compare", str(run_dir), "--out", str(tmp_path / "one")]) == 0
    latest = run_dir / "checkpoints" / "step_000002" / "eval" / "results.json"
    assert f"{run_dir}: using {latest} (the latest of 2 evaluated checkpoints)" in capsys.readouterr().err
    older = run_dir / "checkpoints" / "step_000001" / "eval"
    assert cli(["compare", str(older), str(run_dir), "--out", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert "runs of different training lengths" in err and f"{latest}: 2 steps" in err and ": 1}" not in err
    results = json.loads((older / "results.json").read_text())  # as another seed's run, to be comparable
    results["run"]["seed"] = results["config"]["run"]["seed"] = 1
    (older / "results.json").write_text(json.dumps(results))
    assert cli(["compare", str(older), str(run_dir), "--out", str(tmp_path / "mixed"), "--allow-mixed-lengths"]) == 0
    assert "compare: mixing training lengths" in capsys.readouterr().err
