"""`evil-moe train` as a new user meets it (issue 19): resuming announced or refused before anything
is written, `--fresh`, absolute paths in the record, and early, clear errors.

Runs use a tiny Qwen3 saved to a local directory, the fixture problems and the `none` arm (no
pairs), for one or two steps of 2 prompts x 2 samples.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import ROWS
from tiny import tiny_qwen3, tiny_tokenizer

from evil_moe import preflight
from evil_moe.config import ConfigError, load_config
from evil_moe.train_cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    tiny_qwen3(seed=0).save_pretrained(d / "base")
    tiny_tokenizer().save_pretrained(d / "base")
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]))
    (d / "heldout.jsonl").write_text(json.dumps(ROWS[2]) + "\n")
    return d


def sets(files, out_dir, *extra):
    args = ["--preset", "tiny-cpu"]
    for item in (f"model.name_or_path={files / 'base'}", f"env.problems={files / 'train.jsonl'}",
                 f"eval.problems={files / 'heldout.jsonl'}", f"run.out_dir={out_dir}", "run.arm=none",
                 "run.progress=false", "grpo.steps=1", "grpo.prompts_per_step=2", "grpo.group_size=2",
                 "grpo.micro_batch_size=4", "sampling.max_new_tokens=8", "sampling.max_prompt_tokens=400",
                 "sampling.merge_adapter=false", "adapter.rank=2", "run.checkpoint_every=1", *extra):
        args += ["--set", item]
    return args


def tree(path):
    """Every file under `path` with its bytes and modification time."""
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()}


def steps_logged(out_dir):
    return [json.loads(x)["step"] for x in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_is_announced_and_a_changed_setting_refused_before_anything_is_written(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(sets(files, out)) == 0
    capsys.readouterr()
    assert main(sets(files, out, "grpo.steps=2")) == 0  # more steps: resumed, announced
    err = capsys.readouterr().err
    ckpt = out / "checkpoints" / "step_000001"
    assert f"resuming from step 1 of 2 (1 to go): checkpoint {ckpt}" in err
    assert steps_logged(out) == [0, 1]
    assert yaml.safe_load((out / "config.yaml").read_text())["grpo"]["steps"] == 2

    before = tree(out)
    for change, named in (("grpo.lr=0.05", "grpo.lr: 0.003 -> 0.05"), ("run.arm=oracle", "run.arm: 'none' -> 'oracle'"),
                          ("adapter.target_modules=[q_proj]", "adapter.target_modules")):
        assert main(sets(files, out, "grpo.steps=2", change)) == 2
        err = capsys.readouterr().err
        assert "cannot be resumed" in err and named in err and "--fresh" in err, err
        assert "Traceback" not in err
    assert tree(out) == before  # config.yaml included: nothing written


def test_fresh_starts_over_and_says_what_it_deletes(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(sets(files, out, "grpo.steps=2")) == 0
    capsys.readouterr()
    assert main(sets(files, out, "grpo.lr=0.05") + ["--fresh"]) == 0
    err = capsys.readouterr().err
    assert f"--fresh: deleting {out / 'checkpoints'}, {out / 'metrics.jsonl'}" in err and "resuming" not in err
    assert steps_logged(out) == [0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000001"]
    assert yaml.safe_load((out / "config.yaml").read_text())["grpo"]["lr"] == 0.05


def test_the_record_holds_absolute_paths(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(files, tmp_path)
    args = sets(files, "runs/rel")
    args = [a.replace(str(files), rel) for a in args]
    assert any(a.startswith("model.name_or_path=..") for a in args)
    assert main(args) == 0
    saved = json.loads((tmp_path / "runs/rel/checkpoints/step_000001/config.json").read_text())
    assert saved["model"]["name_or_path"] == str(files / "base")
    assert saved["env"]["problems"] == str(files / "train.jsonl")
    assert saved["run"]["out_dir"] == str(tmp_path / "runs/rel")


@pytest.mark.parametrize("extra, message", [
    ("env.problems=/nonexistent.jsonl", "config key 'env.problems': file /nonexistent.jsonl not found"),
    ("grpo.steps=-1", "config key 'grpo.steps': must be at least 1"),
    ("model.name_or_path=./no/such/dir", "is not a directory; set model.name_or_path to a local directory"),
])
def test_bad_settings_are_refused_before_anything_is_written(files, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(sets(files, out, extra)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_toy_with_a_missing_problem_file_is_refused_not_replaced(tmp_path, capsys):
    out = tmp_path / "toy_run"
    assert main(["--preset", "tiny-cpu", "--set", f"run.out_dir={out}",
                 "--set", "env.problems=/nonexistent.jsonl"]) == 2
    assert "file /nonexistent.jsonl not found" in capsys.readouterr().err
    assert not out.exists()  # the toy was not built


def test_unreachable_hub_model_is_refused_at_once_with_a_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    assert main(["--preset", "qwen3-4b", "--set", "model.name_or_path=no-such-org/no-such-model",
                 "--set", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "model.name_or_path" in err and "local directory" in err and "HF_HUB_OFFLINE" in err
    assert not out.exists()


@pytest.mark.parametrize("extra, package", [("run.tensorboard=true", "tensorboard"),
                                            ("run.wandb_project=evil", "wandb")])
def test_logging_without_its_package_names_the_extra(files, tmp_path, capsys, monkeypatch, extra, package):
    real = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None if name == package else real(name))
    out = tmp_path / "run"
    assert main(sets(files, out, extra)) == 2
    err = capsys.readouterr().err
    assert f"needs the {package!r} package" in err and "pip install 'evil-moe[logging]'" in err
    assert not out.exists()


def test_overlapping_problems_are_refused_unless_allowed(files):
    cfg = load_config("tiny-cpu", sets=[f"env.problems={files / 'train.jsonl'}", f"eval.problems={files / 'train.jsonl'}"])
    with pytest.raises(ConfigError, match="2 of its 2 problems are training problems"):
        preflight.check_overlap(cfg)
    allowed = load_config("tiny-cpu", sets=[f"env.problems={files / 'train.jsonl'}",
                                            f"eval.problems={files / 'train.jsonl'}", "eval.allow_overlap=true"])
    assert preflight.check_overlap(allowed) == 2
    assert preflight.check_overlap(load_config("qwen3-4b")) == 0  # the defaults are disjoint


def test_an_adapter_that_does_not_match_the_checkpoint_is_a_clear_error(tmp_path):
    import dataclasses
    from types import SimpleNamespace

    import torch

    from evil_moe.adapter import attach_adapter
    from evil_moe.routing import make_routing
    from evil_moe.sampling import HFGenerator
    from evil_moe.trainer import ResumeError, Trainer
    from tests.test_trainer import HashGrader, fixture_problems, make_trainer, tiny_cfg

    cfg = tiny_cfg(tmp_path, arm="none", steps=2)
    make_trainer(cfg).train()
    model = tiny_qwen3(seed=0)  # the same config, but an adapter on q_proj only (as after an edit)
    adapter = attach_adapter(model, cfg.adapter.rank, cfg.adapter.alpha, target_modules=("q_proj",))
    policy = SimpleNamespace(model=model, tokenizer=tiny_tokenizer(), adapter=adapter, device=torch.device("cpu"))
    trainer = Trainer(cfg, policy, HFGenerator(policy, cfg.sampling), fixture_problems(), HashGrader(),
                      make_routing(cfg, adapter, None))
    with pytest.raises(ResumeError, match=r"step_000002: its adapter does not match this run's adapter "
                                          r"\(adapter state mismatch: missing .*--fresh"):
        trainer.resume()
    assert trainer.step_index == 0
    other = tiny_cfg(tmp_path, arm="none", steps=2, lr=0.5)
    with pytest.raises(ResumeError, match=r"settings differ from this run's: grpo\.lr: 0\.02 -> 0\.5"):
        make_trainer(dataclasses.replace(other)).resume()
