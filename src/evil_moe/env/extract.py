"""Code extraction from a response: every closed ```python or bare ``` fenced block, joined."""

from __future__ import annotations

import re
from dataclasses import dataclass

# An opening fence at a line start with its tag, then the body up to the next closing fence.
# Only blocks tagged `python` or untagged count; other languages are skipped.
_ANY_FENCE = re.compile(r"^[ \t]*```([^\n]*)\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Extracted:
    code: str
    blocks: int

    @property
    def format_ok(self) -> bool:
        """At least one python or untagged fenced block was found."""
        return self.blocks > 0


def extract_code(response: str) -> Extracted:
    """Join the bodies of the response's python/untagged fenced blocks with blank lines."""
    bodies = []
    for m in _ANY_FENCE.finditer(response):
        tag = m.group(1).strip()
        if tag in ("", "python"):
            bodies.append(m.group(2))
    return Extracted(code="\n\n".join(b.rstrip("\n") for b in bodies), blocks=len(bodies))
