"""Per-problem time limits: derived from the canonical solution's measured cost, cached.

A fixed limit labels slow correct solutions wrong on a slow machine (six of the benchmark's
canonical solutions take 6 to 18 s here against its 3 s), so by default each problem's limit is
`max(floor_s, factor x cost)`, where `cost` is the time the canonical solution's oracle program
took, measured once per problem and machine and cached in a JSON file (as EvalPlus derives its
limits from the reference solution). The sandbox meters a program's own CPU time across all its
processes where it can (`RunResult.cpu_s`), so a busy machine does not move the limit; where it
cannot, the wall time is used. `policy="fixed"` gives every problem `floor_s`: with the
sandbox's wall-clock limit that is the benchmark's fixed 3 s, for fidelity runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

POLICIES = ("measured", "fixed")


@dataclass(frozen=True)
class LimitConfig:
    policy: str = "measured"  # "measured": max(floor_s, factor x canonical cost); "fixed": floor_s
    floor_s: float | None = None  # None -> the sandbox's timeout_s (the benchmark's 3 s)
    factor: float = 4.0  # the limit's multiple of the canonical solution's measured cost
    retry_factor: float = 4.0  # an oracle with no verdict runs once more under this x its limit
    calibration_s: float = 120.0  # the limit while the canonical solution is measured
    cache: str | None = None  # JSON file of measured costs; None -> $EVIL_MOE_CACHE or ~/.cache

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"LimitConfig.policy must be one of {POLICIES}, got {self.policy!r}")
        for name in ("factor", "retry_factor", "calibration_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LimitConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.floor_s is not None and not self.floor_s > 0:
            raise ValueError(f"LimitConfig.floor_s must be positive, got {self.floor_s!r}")


def machine_key() -> str:
    """Which machine a cost was measured on: host, architecture, cores and Python version."""
    return (f"{platform.node()}|{platform.machine()}|{os.cpu_count()}|"
            f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}")


def problem_key(problem) -> str:
    """A problem's identity for the cache: its id, setup, asserts and canonical solution."""
    h = hashlib.sha256()
    for part in (str(problem.id), problem.setup_code, *problem.gt_answer, problem.canonical_solution):
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:24]


def default_cache_path() -> Path:
    if os.environ.get("EVIL_MOE_CACHE"):
        return Path(os.environ["EVIL_MOE_CACHE"]) / "limits.json"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "evil-moe" / "limits.json"


class CostCache:
    """Measured canonical costs (seconds) per machine and problem, kept in a JSON file.

    A missing or unreadable file is an empty cache (said once, loudly, if unreadable); writes
    go through a temporary file and a rename, so a crash never leaves half a file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.machine = machine_key()
        self._all: dict = {}
        try:
            self._all = json.loads(self.path.read_text())
            if not isinstance(self._all, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            self._all = {}
        except (OSError, ValueError) as e:
            log.warning("ignoring the limits cache %s (%s); costs will be measured again", self.path, e)
            self._all = {}

    def get(self, key: str) -> float | None:
        v = self._all.get(self.machine, {}).get(key)
        return float(v) if isinstance(v, (int, float)) and v >= 0 else None

    def put(self, costs: dict[str, float]) -> None:
        if not costs:
            return
        self._all.setdefault(self.machine, {}).update(costs)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".limits-")
            with os.fdopen(fd, "w") as f:
                json.dump(self._all, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("could not write the limits cache %s (%s); costs stay in memory", self.path, e)


def limit_for(cfg: LimitConfig, floor_s: float, cost: float | None) -> float:
    """The limit of one problem: `floor_s` under the fixed policy or before its cost is known,
    else max(floor_s, factor x cost)."""
    if cfg.policy == "fixed" or cost is None:
        return floor_s
    return max(floor_s, cfg.factor * cost)
