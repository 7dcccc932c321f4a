"""Versioned prompt templates for the model planner.

The templates are the ``*.md`` files beside this module (Jinja2, rendered with
autoescape off: the output is a prompt, not HTML). Their version is a digest
of the exact template text, so every planner step in a history records which
prompt produced it, and a changed prompt is a new version by construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

__all__ = ["PromptSet", "outreach_prompts", "um_recommender_prompts"]

_FOLDER = Path(__file__).parent
# Templates are read once per process (no auto-reload), so the text rendered always matches the version.
_ENV = Environment(loader=FileSystemLoader(_FOLDER), undefined=StrictUndefined, autoescape=False,
                   keep_trailing_newline=True, auto_reload=False)


@dataclass(frozen=True)
class PromptSet:
    name: str
    files: tuple[str, ...]

    @cached_property
    def version(self) -> str:
        """``name@sha256:<12 hex>`` over the template files, in order."""
        digest = hashlib.sha256()
        for file in self.files:
            digest.update(file.encode() + b"\0" + (_FOLDER / file).read_bytes() + b"\0")
        return f"{self.name}@sha256:{digest.hexdigest()[:12]}"

    def render(self, part: str, **values: Any) -> str:  # noqa: ANN401
        file = f"{self.name}.{part}.md"
        if file not in self.files:
            raise KeyError(f"prompt {self.name} has no part {part!r}; parts: {', '.join(self.files)}")
        return _ENV.get_template(file).render(**values).strip()


@cache
def outreach_prompts() -> PromptSet:
    return PromptSet("outreach_planner", ("outreach_planner.system.md", "outreach_planner.user.md",
                                          "outreach_planner.repair.md"))


@cache
def um_recommender_prompts() -> PromptSet:
    return PromptSet("um_recommender", ("um_recommender.system.md", "um_recommender.user.md",
                                        "um_recommender.repair.md"))
