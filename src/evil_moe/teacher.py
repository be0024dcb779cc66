"""Teacher demonstrations: off-policy completions that replace the last sample of the first
slots' groups during the first `run.teacher_steps` steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evil_moe.env.modes import markers_for
from evil_moe.env.problems import iter_jsonl
from evil_moe.env.prompts import build_prompt


class TeacherDemoError(ValueError):
    """A teacher demonstration row is malformed or matches no training problem; names file and line."""


@dataclass(frozen=True)
class TeacherDemo:
    problem_index: int  # index into the trainer's problems
    completion: str
    line: int  # 1-based line in the JSONL


def load_teacher_demos(path: str | Path, problems, mode: str) -> list[TeacherDemo]:
    """JSONL rows {"problem_id", "completion"} or {"prompt", "completion"}; a prompt is the chat
    messages of the training prompt or the text of its user message."""
    by_id = {str(p.id): i for i, p in enumerate(problems)}
    by_prompt: dict[str, int] = {}
    for i, p in enumerate(problems):
        messages = build_prompt(p, mode, markers_for(p.id, mode, "train"))
        by_prompt.setdefault(json.dumps(messages, sort_keys=True), i)
        by_prompt.setdefault(json.dumps([m["content"] for m in messages if m["role"] == "user"][-1]), i)
    demos = []
    for n, where, row in iter_jsonl(path, TeacherDemoError):
        if not isinstance(row, dict) or not isinstance(row.get("completion"), str):
            raise TeacherDemoError(f"{where}: field 'completion' (a string) is missing")
        if "problem_id" in row:
            index = by_id.get(str(row["problem_id"]))
            if index is None:
                raise TeacherDemoError(f"{where}: problem_id {row['problem_id']!r} is not a training problem")
        elif "prompt" in row:
            index = by_prompt.get(json.dumps(row["prompt"], sort_keys=True))
            if index is None:
                raise TeacherDemoError(f"{where}: field 'prompt' matches no training prompt of mode {mode!r}")
        else:
            raise TeacherDemoError(f"{where}: needs field 'problem_id' or 'prompt'")
        demos.append(TeacherDemo(index, row["completion"], n))
    if not demos:
        raise TeacherDemoError(f"{path}: no demonstrations")
    return demos

