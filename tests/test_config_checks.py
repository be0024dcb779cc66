"""Config checks a new user meets first: impossible values refused, grammar, list syntax, and the
default training and evaluation problems disjoint (issue 19)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from evil_moe.config import ConfigError, load_config, preset
from evil_moe.env.problems import iter_jsonl, load_problems, shared_problems


@pytest.mark.parametrize("item, key", [
    ("grpo.steps=-1", "grpo.steps"),
    ("grpo.steps=0", "grpo.steps"),
    ("grpo.lr=0", "grpo.lr"),
    ("grpo.lr=-1e-3", "grpo.lr"),
    ("grpo.warmup_steps=-1", "grpo.warmup_steps"),
    ("grpo.kl_coef=-0.1", "grpo.kl_coef"),
    ("router.lr=0", "router.lr"),
    ("sampling.max_new_tokens=0", "sampling.max_new_tokens"),
    ("env.workers=0", "env.workers"),
    ("env.timeout_s=0", "env.timeout_s"),
    ("run.checkpoint_every=0", "run.checkpoint_every"),
    ("adapter.alpha=0", "adapter.alpha"),
    ("adapter.target_modules=[]", "adapter.target_modules"),
    ("eval.bootstrap_samples=0", "eval.bootstrap_samples"),
])
def test_impossible_values_are_refused_naming_the_key(item, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        load_config("qwen3-4b", sets=[item])


def test_type_errors_read_as_english():
    with pytest.raises(ConfigError, match=r"2\.5 is not an int$"):
        load_config(sets=["grpo.steps=2.5"])
    with pytest.raises(ConfigError, match=r"'fast' is not a float$"):
        load_config(sets=["grpo.lr=fast"])


def test_a_list_key_given_one_word_names_the_list_syntax():
    with pytest.raises(ConfigError, match=r"adapter\.target_modules.*\[a, b\]"):
        load_config(sets=["adapter.target_modules=q_proj"])
    assert load_config(sets=["adapter.target_modules=[q_proj,v_proj]"]).adapter.target_modules == ("q_proj", "v_proj")


def test_paper_preset_trains_and_evaluates_on_disjoint_problems():
    cfg = preset("qwen3-4b")
    train, held = load_problems(cfg.env.problems), load_problems(cfg.eval.problems)
    assert (len(train), len(held)) == (42, 13)
    assert shared_problems(train, held) == []
    assert sorted(str(p.id) for p in train + held) == sorted(str(p.id) for p in load_problems("shipped"))
    assert cfg.eval.allow_overlap is False


def test_shared_problems_match_by_id_or_prompt():
    train = load_problems("shipped:train")
    same_prompt = [dataclasses.replace(train[0], id="other")]
    assert shared_problems(train, train[:3]) == train[:3]
    assert shared_problems(train, same_prompt) == same_prompt


def test_tiny_preset_evaluates_with_the_markers_it_trained_with():
    cfg = preset("tiny-cpu")
    assert cfg.eval.markers == "train" and cfg.eval.in_distribution is False
    assert preset("qwen3-4b").eval.markers == "heldout"


def test_json_error_at_the_end_of_a_line_names_that_line_and_its_last_column(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + '{"a": 1\n' + json.dumps({"a": 2}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2: bad JSON \(Expecting ',' delimiter at column 8\)"):
        list(iter_jsonl(path, ValueError))
