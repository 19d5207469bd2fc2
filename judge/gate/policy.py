"""The release gate's policy: what a candidate must show before it ships, read from a TOML file.

A policy is a frozen value object with named defaults, so ``GatePolicy()`` is the default gate and a TOML
file only names what it changes (see ``examples/gate.toml``)::

    min_cases = 100                    # distinct accepted cases every entry in scope needs
    min_win_rate_lower_bound = 0.5     # the win rate's lower confidence bound must reach this
    scope = ["spec/*"]                 # entry ids or globs; absent = every entry known
    interval = "wilson"                # or "bootstrap"
    max_ece = 0.10                     # optional calibration bounds on held-out rulings
    calibration_uses = "upper"         # the bound applies to the upper end of the metric's 95% interval

    [per_entry."spec/avoid-self-harm"] # overrides for one entry (or a glob of entries)
    min_cases = 200
    min_win_rate = 0.6
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from judge.errors import InputError, first_validation_error
from judge.jsonl import check_value

__all__ = ["EntryOverride", "GatePolicy", "load_policy"]


class EntryOverride(BaseModel):
    """Thresholds for one entry (or a glob of entries) that differ from the policy's defaults.

    Attributes:
        min_cases: Distinct accepted cases this entry needs instead of the policy's ``min_cases``.
        min_win_rate: Bound the win rate's lower confidence bound must reach instead of
            ``min_win_rate_lower_bound``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_cases: int | None = Field(default=None, ge=0)
    min_win_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class GatePolicy(BaseModel):
    """Everything the gate checks, with the defaults of the release gate.

    Attributes:
        min_cases: Distinct accepted cases (near-duplicates merged) every entry in scope needs.
        min_win_rate_lower_bound: The lower end of the win rate's confidence interval must be at or above this.
        per_entry: Overrides by entry id or glob (an exact id wins over globs; among globs the first written).
        scope: Entry ids or globs (``fnmatch``: ``spec/*``) the gate covers; None covers every entry known
            (from the coverage, the results and any explicitly required entries). A pattern that matches
            no entry fails the gate, so a typo cannot shrink the scope silently.
        interval: ``wilson`` (closed form, the default) or ``bootstrap`` (percentile, seeded).
        confidence: Two-sided confidence level of the interval whose lower end is gated.
        ties: ``half`` counts a tie as half a win; ``exclude`` drops ties from the denominator.
        failures: ``loss`` (default) counts a comparison the judge failed to decide as a loss for the
            candidate; ``exclude`` drops it. A failure is never a win.
        max_ece: Upper bound on the judge's expected calibration error on held-out rulings (None: not gated).
        max_brier: Upper bound on the judge's binary Brier score on held-out rulings (None: not gated).
        calibration_uses: ``upper`` (default) gates the upper end of the metric's bootstrap interval, so the
            gate passes only when the data show calibration within bound; ``point`` gates the estimate.
        ece_metric: Which headline ECE of the evaluation to gate (``judge eval`` reports several binnings).
        bootstrap_samples: Replicates when ``interval = "bootstrap"``.
        review_methods: Which reviews make a case count (``person``, ``check``, ``source``); None counts every
            accepted case. ``["person"]`` gates only on cases a person accepted.
        seed: Seed of the bootstrap (the gate is reproducible).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_cases: int = Field(default=100, ge=0)
    min_win_rate_lower_bound: float = Field(default=0.5, ge=0.0, le=1.0)
    per_entry: dict[str, EntryOverride] = Field(default_factory=dict)
    scope: list[str] | None = None
    interval: Literal["wilson", "bootstrap"] = "wilson"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    ties: Literal["half", "exclude"] = "half"
    failures: Literal["loss", "exclude"] = "loss"
    max_ece: float | None = Field(default=None, ge=0.0, le=1.0)
    max_brier: float | None = Field(default=None, ge=0.0, le=1.0)
    calibration_uses: Literal["point", "upper"] = "upper"
    ece_metric: str = "ece_uniform_15"
    bootstrap_samples: int = Field(default=2000, ge=100)
    seed: int = 0
    review_methods: list[Literal["person", "check", "source"]] | None = None

    @field_validator("scope")
    @classmethod
    def _scope_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("scope is empty; leave it out to cover every entry")
        return value

    def override_for(self, entry_id: str) -> EntryOverride | None:
        """The override that applies to an entry: its exact id, else the first glob that matches it."""
        if entry_id in self.per_entry:
            return self.per_entry[entry_id]
        for pattern, override in self.per_entry.items():
            if fnmatch.fnmatchcase(entry_id, pattern):
                return override
        return None

    def min_cases_for(self, entry_id: str) -> int:
        """Distinct accepted cases this entry needs."""
        override = self.override_for(entry_id)
        return override.min_cases if override and override.min_cases is not None else self.min_cases

    def bound_for(self, entry_id: str) -> float:
        """The bound this entry's win-rate lower confidence bound must reach."""
        override = self.override_for(entry_id)
        if override and override.min_win_rate is not None:
            return override.min_win_rate
        return self.min_win_rate_lower_bound


def load_policy(path: str | Path) -> GatePolicy:
    """Read a gate policy from a TOML file.

    Raises:
        InputError: The file is missing, is not TOML, or a field is unknown or invalid (named in ``field``).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except RecursionError:
        raise InputError("not valid TOML: nested too deeply", path=path) from None
    except FileNotFoundError:
        raise InputError("no such gate policy file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read gate policy: {exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=path) from exc
    bad = check_value(data)
    if bad is not None:
        raise InputError(f"field {bad[0]} {bad[1]}", path=path, field=bad[0])
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as exc:
        field, msg = first_validation_error(exc, "(policy)")
        raise InputError(f"field {field}: {msg}", path=path, field=field) from exc
