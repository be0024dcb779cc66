import dataclasses

import pytest

from evil_moe.config import (
    ARMS,
    Config,
    ConfigError,
    from_dict,
    help_text,
    load_config,
    parse_set,
    preset,
    to_dict,
)


def test_paper_preset_follows_the_benchmark():
    cfg = preset("qwen3-4b")
    assert (cfg.grpo.prompts_per_step, cfg.grpo.group_size) == (16, 16)
    assert cfg.adapter.rank == 32 and cfg.grpo.lr == 7e-5 and cfg.grpo.steps == 200
    assert (cfg.sampling.temperature, cfg.sampling.top_p) == (0.7, 0.95)
    assert (cfg.sampling.max_prompt_tokens, cfg.sampling.max_new_tokens) == (1536, 1536)
    assert cfg.model.enable_thinking is False


def test_tiny_preset_is_cpu_and_local():
    cfg = preset("tiny-cpu")
    assert cfg.model.name_or_path == "toy" and cfg.model.device == "cpu"


def test_set_overrides_are_typed():
    cfg = load_config("tiny-cpu", sets=["grpo.lr=0.5", "run.arm=none", "adapter.target_modules=[q_proj]"])
    assert cfg.grpo.lr == 0.5 and cfg.run.arm == "none" and cfg.adapter.target_modules == ("q_proj",)
    assert isinstance(load_config(sets=["grpo.lr=1"]).grpo.lr, float)
    assert load_config(sets=["grpo.lr=1e-2"]).grpo.lr == 0.01  # YAML 1.1 reads 1e-2 as a string


def test_env_settings_reach_the_sandbox_config():
    sb = load_config("tiny-cpu", sets=["env.supervise=false", "env.require_isolation=true", "env.workers=3"]).env.sandbox()
    assert (sb.supervise, sb.require_isolation, sb.workers) == (False, True, 3)
    assert load_config("tiny-cpu").env.sandbox().supervise is True


@pytest.mark.parametrize("item, key", [
    ("grpo.lrr=1", "grpo.lrr"),
    ("nope.x=1", "nope"),
    ("grpo.steps=1.5", "grpo.steps"),
    ("grpo.steps=true", "grpo.steps"),
    ("grpo.lr=fast", "grpo.lr"),
    ("run.arm=best", "run.arm"),
    ("env.mode=magic", "env.mode"),
    ("grpo.deployed_baseline=mean", "grpo.deployed_baseline"),
    ("adapter.target_modules=[1, 2]", "adapter.target_modules[0]"),
    ("grpo=3", "grpo"),
    ("model.dtype=bfloat16", "sampling.merge_adapter"),  # tiny-cpu merges for generation: float32 only
])
def test_bad_key_or_type_is_refused_naming_the_key(item, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config("tiny-cpu", sets=[item])


def test_yaml_file_error_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("grpo:\n  steps: many\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*grpo\.steps"):
        load_config("tiny-cpu", config_file=p)


def test_round_trip_through_dict():
    cfg = load_config("tiny-cpu", sets=["run.arm=oracle"])
    assert from_dict(to_dict(cfg)) == cfg


def test_parse_set_nests_and_needs_equals():
    assert parse_set(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["novalue"])


def test_every_field_has_help_and_arms_match():
    def walk(node):
        for f in dataclasses.fields(node):
            assert f.metadata.get("help"), f.name
            if dataclasses.is_dataclass(getattr(node, f.name)):
                walk(getattr(node, f.name))
    walk(Config())
    text = help_text()
    assert "grpo.group_size" in text and "Samples per prompt" in text
    import typing

    from evil_moe.config import RunConfig
    assert typing.get_args(typing.get_type_hints(RunConfig)["arm"]) == ARMS
