"""Evaluation and calibration from files: the I/O edge around the pure modules of this package.

* :func:`load_labels` reads labelled pair files (the format of the dev sets in ``data/``), each pair with its source
  (its ``source`` field, the file it came from, or another field: ``group_by``).
* :func:`evaluate_results` joins results files with their labels and reports raw and cross-fitted recalibrated
  metrics side by side (:class:`Evaluation`); with several sources, also leave-one-source-out figures; with a
  fitted calibrator, its metrics on these pairs and the shift alarm's finding.
* :func:`fit_from_results` fits a :class:`~judge.calibration.recalibrate.Calibrator` (with an abstention
  threshold chosen on its own confidences) for the one judge configuration in the results files; with several
  sources, choices are made by the worst left-out source and its left-out-source figures are stored with it.

Several labelled files and several results files are read as one labelled set (pair ids must be unique).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from judge.calibration.evaluate import EvalReport, LabelledRow, PairLabel, evaluate, join, point_metrics
from judge.calibration.recalibrate import (
    METHODS,
    Calibrator,
    abstention_threshold,
    calibration_key,
    fit_calibrator,
    fit_folds,
)
from judge.calibration.selective import SelectiveResult, Threshold
from judge.calibration.shift import ShiftReport, shift_test
from judge.calibration.signals import SignalTable, raw_view, signals_from_verdicts
from judge.calibration.sources import SourceValidation, leave_one_source_out
from judge.errors import InputError, NothingScoredError
from judge.records import read_pairs, read_results
from judge.verdicts import JudgeConfig, Verdict

__all__ = ["Evaluation", "Recalibration", "evaluate_results", "fit_from_results", "load_labels", "parse_signals"]

Paths = str | Path | Sequence[str | Path]

log = logging.getLogger(__name__)


class SplitSpread(BaseModel):
    """One recalibrated metric over several random fold splits."""

    mean: float
    min: float
    max: float
    n_splits: int


class Recalibration(BaseModel):
    """How the recalibrated report was made (or why it was not)."""

    method: str | None = None
    fold_methods: list[str] = Field(default_factory=list)
    n_folds: int | None = None
    seed: int | None = None
    skipped: str | None = None
    splits: dict[str, SplitSpread] = Field(
        default_factory=dict,
        description="Recalibrated point metrics over several random fold splits (seeds seed, seed+1, ...): on a "
                    "few hundred pairs which pairs share a fold moves ECE by several hundredths.")

    def describe(self) -> str:
        """One line for people: the method and the folds, or why recalibration was skipped."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.method:
            return ""
        chosen = f"; chosen per fold: {', '.join(self.fold_methods)}" if self.fold_methods else ""
        line = f"{self.method}, {self.n_folds}-fold cross-fitted (seed {self.seed}){chosen}"
        if self.splits:
            n = next(iter(self.splits.values())).n_splits
            spread = ", ".join(f"{name} {s.mean:.3f} ({s.min:.3f}-{s.max:.3f})" for name, s in self.splits.items())
            line += f"; over {n} fold splits, mean (min-max): {spread}"
        return line


class Evaluation(BaseModel):
    """Raw and (cross-fitted) recalibrated reports for one results file against its labels."""

    labelled: str
    results: str
    judge: dict[str, object]
    raw: EvalReport
    recalibrated: EvalReport | None = None
    recalibration: Recalibration = Field(default_factory=Recalibration)
    unlabelled_results: int = 0
    source_validation: SourceValidation | None = Field(
        None, description="Leave-one-source-out figures when the labelled pairs come from several sources.")
    applied: EvalReport | None = Field(None, description="A fitted calibrator's metrics on these pairs.")
    shift: ShiftReport | None = Field(None, description="The shift alarm: these pairs vs the calibrator's data.")


def _paths(paths: Paths) -> list[Path]:
    return [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]


def _field_values(path: Path, field: str) -> dict[int, str]:
    """The value of a top-level field on every line of a JSONL file (by 1-based line number)."""
    out: dict[int, str] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                value = json.loads(line).get(field)
                out[n] = f"(no {field})" if value is None else str(value)
    return out


def load_labels(paths: Paths, *, group_by: str = "source") -> dict[str, PairLabel]:
    """Labels of one or more pair files by pair id (pairs without a label are refused: evaluation needs them
    all).

    Args:
        paths: Labelled pair files, read as one set.
        group_by: What a pair's source is: its ``source`` field, ``file`` (the file's name without suffix), or
            the name of another top-level field of the pair records.

    Raises:
        InputError: On an unlabelled pair, a pair id in two files, no labelled pair, or a ``group_by`` field no
            pair has.
    """
    labels: dict[str, PairLabel] = {}
    for path in _paths(paths):
        records = list(read_pairs(path))
        extra = _field_values(path, group_by) if group_by not in ("source", "file") else {}
        for rec in records:
            if rec.label is None:
                raise InputError(f"{path}:{rec.line}: pair {rec.pair.id!r} has no label (A, B or tie)")
            pid = rec.pair.id or ""
            if pid in labels:
                raise InputError(f"{path}:{rec.line}: pair id {pid!r} appears in more than one labelled file")
            source = (rec.source or "(no source)" if group_by == "source" else path.stem if group_by == "file"
                      else extra.get(rec.line, f"(no {group_by})"))
            labels[pid] = PairLabel(rec.label, source, len(rec.pair.response_a.text), len(rec.pair.response_b.text))
    if not labels:
        raise InputError(f"{', '.join(map(str, _paths(paths)))}: no labelled pairs")
    if group_by not in ("source", "file") and all(label.source == f"(no {group_by})" for label in labels.values()):
        # a misspelt field would silently make every pair one source, and switch off the per-source checks
        raise InputError(f"no labelled pair has a field {group_by!r} to group by (--group-by); "
                         "use source, file or a field the pair records have", field="group_by")
    return labels


def parse_signals(text: str | None) -> list[str] | None:
    """``--signals``: None or ``auto`` (chosen by left-out log loss) or a comma-separated feature list.

    Raises:
        InputError: On an unknown feature name.
    """
    from judge.calibration.signals import FEATURES

    if text is None or text.strip() in ("", "auto"):
        return None
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in FEATURES]
    if unknown:
        raise InputError(f"unknown signal(s) {', '.join(map(repr, unknown))}; known: {', '.join(FEATURES)}",
                         field="--signals")
    if "logit" not in names:
        names.insert(0, "logit")
    return names


def _require_scored(rows: Sequence[LabelledRow], missing: int, results: str) -> None:
    """Raise `NothingScoredError` when no row has a verdict that can be scored (not failed, not escalated)."""
    if any(r.verdict.failure is None and not r.verdict.escalated for r in rows):
        return
    failed = sum(1 for r in rows if r.verdict.failure is not None)
    raise NothingScoredError(f"{results}: no labelled pair has a verdict to score ({failed} failed, "
                             f"{len(rows) - failed} escalated, {missing} missing)", failed=failed,
                             labelled=len(rows) + missing)


def _read_all(results: Paths) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for path in _paths(results):
        verdicts.extend(read_results(path))  # a missing file or a folder is an InputError naming it
    return verdicts


def _name(paths: Paths) -> str:
    return ", ".join(str(p) for p in _paths(paths))


def _one_config(verdicts: Sequence[Verdict], path: str | Path) -> JudgeConfig:
    keys: dict[str, JudgeConfig] = {}
    for v in verdicts:
        keys.setdefault(repr(sorted(calibration_key(v.config).items())), v.config)
    if len(keys) != 1:
        raise InputError(f"{path}: results come from {len(keys)} judge configurations; evaluate or calibrate "
                         "one configuration at a time (split the file by its 'config' field)")
    return next(iter(keys.values()))


def _scored(rows: Sequence[LabelledRow]) -> tuple[list[LabelledRow], SignalTable, list[str]]:
    scored = [r for r in rows if r.verdict.failure is None and not r.verdict.escalated]
    table = signals_from_verdicts([r.verdict for r in scored], [(r.truth.len_a, r.truth.len_b) for r in scored])
    return scored, table, [r.truth.label for r in scored]


def evaluate_results(labelled: Paths, results: Paths, *, recalibrate: str | None = "auto",
                     n_folds: int = 5, seed: int = 0, n_boot: int = 1000, target: float = 0.9,
                     delta: float = 0.1, split_repeats: int = 1, group_by: str = "source",
                     features: Sequence[str] | None = None, calibrator: Calibrator | None = None) -> Evaluation:
    """Report results files against their labelled pair files: raw, and recalibrated with k-fold cross-fitting.

    Args:
        labelled: The labelled pair file(s) (id, prompt, response_a, response_b, label).
        results: Verdicts (`judge run` output) for some or all of those pairs.
        recalibrate: ``auto`` (choose by cross-validated log loss inside every fold), a method name, or None.
        n_folds, seed: Cross-fitting folds and seed (also seeds the bootstrap).
        n_boot: Bootstrap replicates for every interval.
        target, delta: Selective judging's target agreement and risk tolerance.
        split_repeats: With more than 1, the recalibrated ECE, Brier score and log loss are also computed over
            this many random fold splits (seeds ``seed``, ``seed + 1``, ...; each a full cross-fit) and
            summarised as mean, min and max in ``recalibration.splits``.
        group_by: What a pair's source is (see `load_labels`); with two or more sources the recalibration is
            also validated leaving one source out (``source_validation``).
        features: The logistic calibrator's features, or None to choose them (see `select_features`).
        calibrator: A fitted calibrator to score on these pairs (``applied``), with the shift alarm's finding
            (``shift``); the verdicts' raw probabilities are used when they were calibrated.
    """
    if split_repeats < 1:
        raise ValueError(f"split_repeats must be at least 1, got {split_repeats}")
    if recalibrate not in (None, "auto", *METHODS):  # a typo must not pass for a skipped recalibration
        raise ValueError(f"unknown calibration method {recalibrate!r}; known: auto, {', '.join(METHODS)}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    labels = load_labels(labelled, group_by=group_by)
    verdicts = _read_all(results)
    if not verdicts:
        raise InputError(f"{_name(results)}: no results to evaluate")
    if calibrator is not None:
        verdicts = [raw_view(v) for v in verdicts]
    config = _one_config(verdicts, _name(results))
    joined = join(verdicts, labels)
    if not joined.rows:
        raise InputError(f"{_name(results)}: none of its {len(verdicts)} results is for a pair in {_name(labelled)}")
    _require_scored(joined.rows, len(joined.missing), _name(results))
    if joined.unlabelled:
        log.warning("%d results are for pairs not in %s (ignored)", len(joined.unlabelled), _name(labelled))
    def report(variant: str, probs: np.ndarray | None = None,
               selective: tuple[SelectiveResult, list[Threshold]] | None = None) -> EvalReport:
        return evaluate(joined.rows, probs=probs, variant=variant, n_missing=len(joined.missing), n_boot=n_boot,
                        seed=seed, target=target, delta=delta, selective_result=selective)

    raw = report("raw")
    out = Evaluation(labelled=_name(labelled), results=_name(results), judge=calibration_key(config), raw=raw,
                     unlabelled_results=len(joined.unlabelled))
    scored, table, labs = _scored(joined.rows)
    if calibrator is not None:
        # The shift alarm reads every judged verdict, escalated ones too: escalation changes what is done
        # with a verdict, not the inputs it was judged from (as `judge run` tests them).
        judged = [r for r in joined.rows if r.verdict.failure is None]
        inputs = signals_from_verdicts([r.verdict for r in judged], [(r.truth.len_a, r.truth.len_b) for r in judged])
        out.shift, out.applied = _apply(calibrator, table, labs, report, inputs)
    if recalibrate is None or recalibrate == "none":
        return out
    sources = [r.truth.source for r in scored]
    if len(set(sources)) >= 2:
        try:
            out.source_validation = leave_one_source_out(table, labs, sources, method=recalibrate, features=features,
                                                         target=target, delta=delta, n_folds=n_folds, seed=seed)
        except ValueError as exc:
            log.warning("leave-one-source-out validation skipped: %s", exc)
    try:
        folds = fit_folds(table, labs, method=recalibrate, n_folds=n_folds, seed=seed, features=features)
    except ValueError as exc:
        out.recalibration = Recalibration(skipped=str(exc))
        return out
    probs, chosen = folds.probabilities(), folds.methods
    variant = f"recalibrated ({recalibrate}, {n_folds}-fold cross-fitted)"
    out.recalibrated = report(variant, probs, folds.abstention(target=target, delta=delta))
    out.recalibration = Recalibration(method=recalibrate, fold_methods=chosen, n_folds=n_folds, seed=seed)
    if split_repeats > 1:
        per_split = [point_metrics(probs, labs)] + [
            point_metrics(fit_folds(table, labs, method=recalibrate, n_folds=n_folds, seed=seed + r,
                                    features=features).probabilities(), labs) for r in range(1, split_repeats)]
        for name in per_split[0]:
            vals = np.asarray([d[name] for d in per_split])
            out.recalibration.splits[name] = SplitSpread(mean=float(vals.mean()), min=float(vals.min()),
                                                         max=float(vals.max()), n_splits=split_repeats)
    return out


def _apply(cal: Calibrator, table: SignalTable, labs: list[str], report: Any,
           judged: SignalTable) -> tuple[ShiftReport, EvalReport]:
    """The shift alarm (on ``judged``: every verdict judged, escalated or not) and the calibrator's report on
    these labelled rows (``table``: the scored ones); its abstention threshold is applied as it would be when
    judging, and its guarantee marked not applicable on a shifted batch."""
    shift = shift_test(cal.reference, judged)
    probs = cal.predict(table)
    selective = None
    if cal.abstain:
        th_value = float(cal.abstain["threshold"]) if cal.abstain.get("certified") else math.inf
        conf = probs.max(axis=1)
        pred = np.asarray(["A", "tie", "B"])[probs.argmax(axis=1)]
        keep = conf >= th_value
        right = int((pred[keep] == np.asarray(labs, dtype=object)[keep]).sum())
        n, kept = len(labs), int(keep.sum())
        th = Threshold(threshold=th_value, target=float(cal.abstain["target"]), delta=float(cal.abstain["delta"]),
                       n_calibration=int(cal.abstain.get("n_calibration", 0)), n_kept=kept,
                       lower_bound=float(cal.abstain.get("lower_bound") or math.nan),
                       certified=bool(cal.abstain.get("certified")))
        selective = (SelectiveResult(coverage=kept / n, agreement=right / kept if kept else math.nan, n=n,
                                     n_kept=kept, n_escalated=n - kept), [th])
    applied: EvalReport = report(f"calibrator {cal.id}", probs, selective)
    if applied.selective is not None:
        applied.selective["guarantee"] = (
            "applies (no shift detected)" if shift.guarantee_applies
            else "not applicable: these pairs differ from the calibration data" if shift.shifted
            else f"unchecked ({shift.status.replace('_', ' ')}): it assumes these pairs are like the calibration "
                 "pairs")
    applied.notes.append(shift.describe())
    return shift, applied


def fit_from_results(labelled: Paths, results: Paths, *, method: str = "auto", n_folds: int = 5,
                     seed: int = 0, target: float | None = 0.9, delta: float = 0.1, group_by: str = "source",
                     features: Sequence[str] | None = None) -> Calibrator:
    """Fit a calibrator for the judge configuration of the results, on every labelled verdict in them.

    The abstention threshold (when ``target`` is given) is chosen on this calibrator's own confidences for the
    labelled verdicts (`abstention_threshold`: the scale it will be applied on); `evaluate_results` reports how
    the same procedure does on held-out folds (`CrossFit.abstention`). With two or more sources (``group_by``)
    the method and the logistic features are chosen by the worst left-out source, and the procedure's
    leave-one-source-out figures are stored in the calibrator (``source_validation``).
    """
    labels = load_labels(labelled, group_by=group_by)
    verdicts = _read_all(results)
    if not verdicts:
        raise InputError(f"{_name(results)}: no results to calibrate on")
    config = _one_config(verdicts, _name(results))
    joined = join(verdicts, labels)
    _require_scored(joined.rows, len(joined.missing), _name(results))
    scored, table, labs = _scored(joined.rows)
    sources = [r.truth.source for r in scored]
    versions = {r.verdict.rulebook_version for r in joined.rows}
    try:
        cal = fit_calibrator(table, labs, config, rulebook_version=versions.pop() if len(versions) == 1 else None,
                             method=method, n_folds=n_folds, seed=seed, groups=sources, features=features)
        validation = (leave_one_source_out(table, labs, sources, method=method, features=features,
                                           target=target if target is not None else 0.9, delta=delta,
                                           n_folds=n_folds, seed=seed)
                      if len(set(sources)) >= 2 else None)
    except ValueError as exc:
        raise InputError(f"cannot fit a calibrator on {_name(results)}: {exc}") from exc
    if validation is not None:
        cal = cal.model_copy(update={"source_validation": validation.summary()})
    if target is None:
        return cal
    th = abstention_threshold(cal.predict(table), labs, target=target, delta=delta)
    # Validated, not copied: the validator stores an undefined bound (none kept) as null, as the saved file
    # holds it, so the id printed now is the id of the calibrator read back from the file.
    return Calibrator.model_validate({**dict(cal), "abstain": {
        "threshold": th.threshold if th.certified else None, "target": target, "delta": delta,
        "certified": th.certified, "n_calibration": th.n_calibration, "n_kept": th.n_kept,
        "lower_bound": th.lower_bound}})
