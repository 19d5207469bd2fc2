"""Rules: the data model, precedence, the Model Spec importer and the rulebook text format."""

from judge.rules.model import (
    AUTHORITY_RANK,
    LAYER_RANK,
    Authority,
    Case,
    Change,
    ChangeKind,
    Holding,
    Layer,
    Pair,
    Process,
    Response,
    Rule,
    RuleStatus,
    RulingCase,
    ToolCall,
)

__all__ = [
    "AUTHORITY_RANK",
    "LAYER_RANK",
    "Authority",
    "Case",
    "Change",
    "ChangeKind",
    "Holding",
    "Layer",
    "Pair",
    "Process",
    "Response",
    "Rule",
    "RuleStatus",
    "RulingCase",
    "ToolCall",
]
