"""Case law: rulings as precedents (conflicts, binding precedents, a ruling from a judgment) and the impact
of rulebook changes on stored judgments."""

from judge.caselaw.impact import ImpactEntry, ImpactReport, RuleDiff, UnknownImpact, diff_shown, impact
from judge.caselaw.rulings import CONFLICT_CANDIDATES, CaseLaw

__all__ = ["CONFLICT_CANDIDATES", "CaseLaw", "ImpactEntry", "ImpactReport", "RuleDiff", "UnknownImpact",
           "diff_shown", "impact"]
