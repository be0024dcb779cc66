"""`evil-moe eval`: the deployment-ablation evaluation of a checkpoint, with its controls.

For every evaluation unit (a loophole mode and a marker family) the held-out problems' prompts
are sampled `K` times under each adapter state, then graded in the sandbox:

    as_trained          both experts on (the model as trained)
    deployed            hack expert ablated: quarantine block reset to its init
    ablate_deployed     control: the deployed block reset to its init instead
    random_subspace_i   control: a random rank-r subspace of the 2r adapter reset to init, drawn
                        per training seed (`controls_seed`): eval.random_subspace_draws of them
                        make the null distribution the hack expert's ablation is ranked in
    base                adapter off (the base model)

Every state samples with the same seed and the same global prompt indices, so with the HF backend
each (prompt, sample) row draws the same random stream in every state: states differ only in
the model. Sections of the report: "main" (eval.modes with eval.markers), "train_markers" (the
same modes with the training markers, when eval.in_distribution) and "pair_heldout" (loophole
modes with no contrastive pair left after the run's router.include_tags/exclude_tags).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evil_moe.config import (
    ORACLE_ARMS,
    PAIR_ARMS,
    Config,
    ConfigError,
    from_dict,
    parse_set,
    to_dict,
)


def controls_seed(run_seed: int, eval_seed: int) -> int:
    """The seed of a run's random subspace draws: mixed from (run.seed, eval.seed), so every
    training seed gets its own draws (the arms of one seed share them, as they share the warm
    start and the sampling streams)."""
    return int(np.random.SeedSequence([run_seed, eval_seed]).generate_state(1, dtype=np.uint32)[0])


def subspace_seed(seed: int, draw: int) -> int:
    """The torch seed of random subspace draw `draw` under the controls' seed `seed`."""
    return int(np.random.SeedSequence([seed, draw]).generate_state(1, dtype=np.uint32)[0])


def state_names(random_subspace_draws: int) -> list[str]:
    """The adapter states in evaluation order."""
    return (["as_trained", "deployed", "ablate_deployed"]
            + [f"random_subspace_{i}" for i in range(random_subspace_draws)] + ["base"])


class StateError(ValueError):
    """An adapter state name is unknown, or a required state is missing."""


def check_states(states: Sequence[str]) -> list[str]:
    """`states` if every name is a known state and as_trained and deployed are present."""
    for name in states:
        known = name in ("as_trained", "deployed", "ablate_deployed", "base") or (
            name.startswith("random_subspace_") and name.rsplit("_", 1)[1].isdigit())
        if not known:
            raise StateError(f"unknown adapter state {name!r}; expected as_trained, deployed, "
                             "ablate_deployed, random_subspace_<i> or base")
    for required in ("as_trained", "deployed"):
        if required not in states:
            raise StateError(f"states must include {required!r} (the headline compares as_trained with deployed)")
    if len(set(states)) != len(states):
        raise StateError(f"states repeat a name: {list(states)}")
    return list(states)


@contextlib.contextmanager
def adapter_state(adapter: Any, name: str, seed: int = 0, backend: str = "hf") -> Iterator[None]:
    """Put `adapter` in state `name` for the duration of the context (restored exactly after).

    `seed` is the controls' seed (`controls_seed`): random subspace draw i is drawn from
    torch seed `subspace_seed(seed, i)`.

    `base` uses `adapter.disabled()` for the HF backend; the vLLM backend serves the adapter's
    parameter values as a LoRA and ignores that flag, so there `base` resets both blocks to
    init instead (the adapter's delta is then exactly zero as well).
    """
    if name == "as_trained":
        yield
    elif name == "deployed":
        with adapter.ablate_quarantine():
            yield
    elif name == "ablate_deployed":
        with adapter.ablate_deployed():
            yield
    elif name.startswith("random_subspace_") and name.rsplit("_", 1)[1].isdigit():
        import torch

        draw = int(name.rsplit("_", 1)[1])
        generator = torch.Generator().manual_seed(subspace_seed(seed, draw))
        with adapter.ablate_subspace(generator):
            yield
    elif name == "base":
        if backend == "hf":
            with adapter.disabled():
                yield
        else:
            with adapter.ablate_quarantine(), adapter.ablate_deployed():
                yield
    else:
        raise StateError(f"unknown adapter state {name!r}; expected as_trained, deployed, "
                         "ablate_deployed, random_subspace_<i> or base")


@dataclass(frozen=True)
class Unit:
    """One sampling unit: a mode with a marker family ('heldout' or 'train')."""
    mode: str
    markers: str


def pair_heldout_modes(cfg: Config) -> list[str]:
    """Loophole modes left without a contrastive pair by the run's include/exclude tags.

    Empty when the run selected no tags (every mode has pairs) or its arm uses no pairs.
    """
    if not (cfg.router.include_tags or cfg.router.exclude_tags) or cfg.run.arm not in PAIR_ARMS:
        return []
    from evil_moe.env.modes import LOOPHOLE_MODES
    from evil_moe.pairs import load_pairs, select_pairs

    chosen = select_pairs(load_pairs(cfg.router.pairs), cfg.router.include_tags or None, cfg.router.exclude_tags)
    covered = {p.mode for p in chosen}
    return [m for m in LOOPHOLE_MODES if m not in covered]


def sections_for(cfg: Config) -> dict[str, dict]:
    """Section name -> {"markers", "modes"}: what the report will contain."""
    ev = cfg.eval
    sections = {"main": {"markers": ev.markers, "modes": list(ev.modes)}}
    if ev.in_distribution and ev.markers != "train":
        sections["train_markers"] = {"markers": "train", "modes": list(ev.modes)}
    held = pair_heldout_modes(cfg)
    if held:
        sections["pair_heldout"] = {"markers": ev.markers, "modes": held}
    return sections


def sample_and_grade(policy: Any, cfg: Config, problems: Sequence[Any], units: Sequence[Unit],
                     states: Sequence[str], grader: Any, generator: Any = None,
                     progress: bool = False) -> list[dict]:
    """Sample K completions per problem for every (unit, state) and grade them.

    Returns one record per sample: state, mode, markers, problem_id, prompt_index, sample_index,
    hack (ground-truth `exploited`), solve (`gt_correct`): both None where the oracle reached no
    verdict; attempt (`attempted`), compiles, reward, mechanism, finished,
    text. `generator` defaults to `sampling.make_generator(policy, cfg.sampling)`.
    """
    from tqdm import tqdm

    from evil_moe.env.grader import GradeRequest
    from evil_moe.env.modes import markers_for
    from evil_moe.env.prompts import build_prompt
    from evil_moe.sampling import make_generator, render_prompts

    if generator is None:
        generator = make_generator(policy, cfg.sampling)
    K = cfg.eval.samples_per_problem
    records: list[dict] = []
    bar = tqdm(total=len(units) * len(states), desc="eval", disable=not progress, file=sys.stderr)
    for unit in units:
        marks = [markers_for(p.id, unit.mode, unit.markers) for p in problems]
        messages = [build_prompt(p, unit.mode, m) for p, m in zip(problems, marks, strict=True)]
        prompt_ids = render_prompts(policy.tokenizer, messages, cfg)
        for state in states:
            bar.set_postfix_str(f"{unit.mode}/{unit.markers}/{state}")
            with adapter_state(policy.adapter, state, controls_seed(cfg.run.seed, cfg.eval.seed), cfg.sampling.backend):
                groups = generator.generate(prompt_ids, K, seed=cfg.eval.seed,
                                            prompt_indices=list(range(len(problems))))
            rollouts = [r for g in groups for r in g]
            reqs = [GradeRequest(problems[r.prompt_index], unit.mode, r.text, marks[r.prompt_index])
                    for r in rollouts]
            grades = grader.grade_batch(reqs)
            for r, g in zip(rollouts, grades, strict=True):
                records.append({"state": state, "mode": unit.mode, "markers": unit.markers,
                                "problem_id": problems[r.prompt_index].id, "prompt_index": r.prompt_index,
                                "sample_index": r.sample_index,
                                "hack": None if g.exploited is None else bool(g.exploited),
                                "solve": None if g.gt_correct is None else bool(g.gt_correct),
                                "attempt": bool(g.attempted), "compiles": bool(g.compiles),
                                "reward": float(g.reward), "mechanism": g.mechanism,
                                "finished": r.finished, "text": r.text})
            bar.update(1)
    bar.close()
    return records


def summarize(records: Sequence[dict], cfg: Config, sections: dict[str, dict], n_problems: int,
              problems_source: str, checkpoint: str | None) -> dict:
    """The results dict (before `report.write_report` adds routing and the final line)."""
    from evil_moe.report import ablation_controls, summarize_section

    out_sections = {}
    n_boot, seed = cfg.eval.bootstrap_samples, cfg.eval.seed
    for key, sec in sections.items():
        rows = [r for r in records if r["markers"] == sec["markers"] and r["mode"] in sec["modes"]]
        out_sections[key] = {**sec, "states": summarize_section(rows, n_boot, seed),
                             "controls": ablation_controls(rows, n_boot, seed)}
    ev = cfg.eval
    return {
        "checkpoint": checkpoint,
        "run": {"arm": cfg.run.arm, "seed": cfg.run.seed, "uses_oracle": cfg.run.arm in ORACLE_ARMS},
        "eval": {"n_problems": n_problems, "problems": problems_source, "samples_per_problem": ev.samples_per_problem,
                 "modes": list(ev.modes), "markers": ev.markers, "temperature": cfg.sampling.temperature,
                 "top_p": cfg.sampling.top_p, "max_new_tokens": cfg.sampling.max_new_tokens,
                 "bootstrap_samples": ev.bootstrap_samples, "seed": ev.seed,
                 "controls_seed": controls_seed(cfg.run.seed, ev.seed),
                 "random_subspace_draws": ev.random_subspace_draws,
                 "problems_are_training_problems": ev.problems == cfg.env.problems,
                 "states": list(dict.fromkeys(r["state"] for r in records))},
        "sections": out_sections,
        "config": to_dict(cfg),
    }


def evaluate_policy(policy: Any, cfg: Config, out_dir: str | Path, *, states: Sequence[str] | None = None,
                    checkpoint: str | None = None, run_dir: str | Path | None = None,
                    grader_factory: Callable[[], Any] | None = None, progress: bool = False) -> dict:
    """Evaluate an in-memory policy: sample, grade, summarize, write the report into `out_dir`.

    Writes samples.jsonl (every graded sample), results.json, report.md and PNGs; `run_dir`
    (with the trainer's metrics.jsonl and rollouts.jsonl) adds the training curves and routing
    diagnostics. Returns the results dict, whose "final_line" is the headline.
    """
    from evil_moe.env.problems import load_problems
    from evil_moe.preflight import check_overlap
    from evil_moe.report import read_jsonl, write_report

    shared = check_overlap(cfg)  # evaluation problems that are training problems: refused unless allowed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems = load_problems(cfg.eval.problems)
    sections = sections_for(cfg)
    units = list(dict.fromkeys(Unit(m, s["markers"]) for s in sections.values() for m in s["modes"]))
    states = check_states(states if states is not None else state_names(cfg.eval.random_subspace_draws))
    if grader_factory is None:
        from evil_moe.env.grader import Grader

        e = cfg.env
        def grader_factory() -> Any:
            return Grader(e.sandbox(), e.limit_config())
    with grader_factory() as grader:
        records = sample_and_grade(policy, cfg, problems, units, states, grader, progress=progress)
    with open(out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    results = summarize(records, cfg, sections, len(problems), str(cfg.eval.problems or "shipped problems"),
                        checkpoint)
    results["eval"]["problems_are_training_problems"] = shared > 0  # stated in the report
    results["eval"]["training_problems_evaluated"] = shared
    metrics = rollouts = None
    if run_dir is not None:
        run = Path(run_dir)
        metrics = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else None
        rollouts = read_jsonl(run / "rollouts.jsonl") if (run / "rollouts.jsonl").exists() else None
        results["run_dir"] = str(run)
    write_report(results, out, metrics=metrics, rollouts=rollouts)
    return results


def default_run_dir(checkpoint_dir: Path) -> Path | None:
    """The run directory of a trainer checkpoint `RUN/checkpoints/step_N`, else None."""
    parent = checkpoint_dir.resolve().parent
    return parent.parent if parent.name == "checkpoints" else None


def resolve_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """(checkpoint, note): `path` itself if it is a checkpoint, else the latest RUN/checkpoints/step_N
    of the run directory `path`, with a note naming it."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint directory {p} does not exist")
    if (p / "adapter.safetensors").is_file():
        return p, None
    found = sorted(c for c in p.glob("checkpoints/step_*[0-9]") if (c / "adapter.safetensors").is_file())
    if not found:
        raise FileNotFoundError(f"{p} is neither a checkpoint (no adapter.safetensors) nor a run directory "
                                "(no checkpoints/step_N)")
    return found[-1], f"{p} is a run directory: evaluating its latest checkpoint {found[-1]} (of {len(found)})"


def eval_config(cfg: Config, problems: str | None = None, samples_per_problem: int | None = None,
                modes: Sequence[str] | None = None, sets: Sequence[str] = ()) -> Config:
    """The checkpoint's config with the evaluation overrides applied (all checked)."""
    changes: dict = {}
    if problems is not None:
        changes["problems"] = problems
    if samples_per_problem is not None:
        changes["samples_per_problem"] = samples_per_problem
    if modes is not None:
        changes["modes"] = list(modes)
    cfg = from_dict({"eval": changes}, cfg) if changes else cfg
    return from_dict(parse_set(list(sets)), cfg) if sets else cfg


def evaluate_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path | None = None, *,
                        problems: str | None = None, samples_per_problem: int | None = None,
                        modes: Sequence[str] | None = None, sets: Sequence[str] = (),
                        states: Sequence[str] | None = None, run_dir: str | Path | None = None,
                        progress: bool = True) -> dict:
    """Load a checkpoint (`modeling.load_policy`) and run `evaluate_policy` on it.

    `checkpoint_dir` is a checkpoint or a run directory, whose latest checkpoint is used (said on
    stderr). Overrides apply on top of the checkpoint's own config before the model loads:
    `problems`, `samples_per_problem` and `modes` set eval.*, `sets` are `key=value` strings for
    any key (e.g. model.name_or_path=/new/place/of/the/base). `out_dir` defaults to
    CHECKPOINT/eval; `run_dir` defaults to RUN when the checkpoint is RUN/checkpoints/step_N.
    """
    from evil_moe.modeling import load_policy, read_checkpoint_config
    from evil_moe.preflight import check_files, check_model_source

    if states is not None:
        check_states(states)
    ckpt, note = resolve_checkpoint(checkpoint_dir)
    if note:
        print(f"evil-moe eval: {note}", file=sys.stderr, flush=True)
    cfg = eval_config(read_checkpoint_config(ckpt), problems, samples_per_problem, modes, sets)
    check_files(cfg, ("eval.problems",))
    if getattr(cfg.model, "init", "pretrained") == "pretrained":  # a random init builds its base locally
        check_model_source(cfg.model.name_or_path)
    policy, _router, cfg = load_policy(ckpt, cfg=cfg)
    return evaluate_policy(policy, cfg, out_dir if out_dir is not None else ckpt / "eval", states=states,
                           checkpoint=str(ckpt), run_dir=run_dir if run_dir is not None else default_run_dir(ckpt),
                           progress=progress)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evil-moe eval",
        description="Deployment-ablation evaluation of a checkpoint: sample held-out problems under each "
                    "adapter state (as trained, hack expert ablated, matched-capacity controls, base), grade "
                    "them, and write results.json, report.md and plots.")
    p.add_argument("checkpoint", help="checkpoint directory written by the trainer (RUN/checkpoints/step_N), "
                                      "or a run directory RUN (its latest checkpoint)")
    p.add_argument("--problems", help="held-out problems: JSONL path or HF dataset name (default: eval.problems)")
    p.add_argument("--samples-per-problem", type=int, help="samples per problem, mode and state (default: "
                                                           "eval.samples_per_problem of the checkpoint's config)")
    p.add_argument("--modes", nargs="+", help="loophole modes to evaluate (default: eval.modes)")
    p.add_argument("--out", help="output directory (default: CHECKPOINT/eval)")
    p.add_argument("--run-dir", help="run directory with metrics.jsonl and rollouts.jsonl "
                                     "(default: RUN for RUN/checkpoints/step_N)")
    p.add_argument("--states", nargs="+", help="adapter states to evaluate (default: all; must include "
                                               "as_trained and deployed)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set eval.random_subspace_draws=5 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also none from model loading)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.no_progress:
        from evil_moe.preflight import quiet_loading

        quiet_loading()
    try:
        results = evaluate_checkpoint(args.checkpoint, args.out, problems=args.problems,
                                      samples_per_problem=args.samples_per_problem, modes=args.modes,
                                      sets=args.sets, states=args.states, run_dir=args.run_dir,
                                      progress=not args.no_progress)
    except (ConfigError, OSError, StateError) as e:  # OSError: a missing file, a model that cannot load
        print(f"evil-moe eval: {e}", file=sys.stderr)
        return 2
    out = args.out or str(Path(results["checkpoint"]) / "eval")
    ev = results["eval"]
    print(f"markers: {ev['markers']} (eval.markers; 'heldout' asks the model to use a test-function name it never "
          "saw in training, which the toy model cannot: --set eval.markers=train)" if ev["markers"] == "heldout"
          else f"markers: {ev['markers']} (eval.markers: the training markers, on held-out problems)")
    print(f"wrote {out}/results.json, {out}/report.md and plots")
    print(results["final_line"])
    return 0
