"""judge: decide which of two AI responses is better under a written, layered rulebook."""

from judge.errors import JudgeError
from judge.rules.model import (
    Authority,
    Case,
    Change,
    Layer,
    Pair,
    Process,
    Response,
    Rule,
    RuleStatus,
    ToolCall,
)
from judge.settings import Settings

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Heavy names (SQLAlchemy, Chroma, the judging engine) load on first use: `import judge` stays fast.
    if name in ("Rulebook", "Retrieval", "RetrievedRule"):
        from judge import rulebook

        return getattr(rulebook, name)
    if name in ("compare", "compare_many", "evaluate", "rerun", "report"):
        from judge import api

        return getattr(api, name)
    if name == "render_view":
        from judge.view import render_view

        return render_view
    if name == "Judge":
        from judge.judging.engine import Judge

        return Judge
    if name in ("Verdict", "JudgeConfig"):
        from judge import verdicts

        return getattr(verdicts, name)
    raise AttributeError(f"module 'judge' has no attribute {name!r}")


__all__ = [
    "Authority",
    "Case",
    "Change",
    "Judge",
    "JudgeConfig",
    "JudgeError",
    "Layer",
    "Pair",
    "Process",
    "Response",
    "Retrieval",
    "RetrievedRule",
    "Rule",
    "RuleStatus",
    "Rulebook",
    "Settings",
    "ToolCall",
    "Verdict",
    "__version__",
    "compare",
    "compare_many",
    "evaluate",
    "render_view",
    "report",
    "rerun",
]
