"""Evaluation and calibration from files: the I/O edge around the pure modules of this package.

* :func:`load_labels` reads a labelled pair file (the format of the dev sets in ``data/``).
* :func:`evaluate_results` joins a results file with its labels and reports raw and cross-fitted recalibrated
  metrics side by side (:class:`Evaluation`).
* :func:`fit_from_results` fits a :class:`~judge.calibration.recalibrate.Calibrator` (with an abstention
  threshold chosen on its cross-fitted confidences) for the one judge configuration in a results file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from judge.calibration.evaluate import EvalReport, LabelledRow, PairLabel, evaluate, join, point_metrics
from judge.calibration.recalibrate import (
    Calibrator,
    abstention_threshold,
    calibration_key,
    fit_calibrator,
    fit_folds,
)
from judge.calibration.selective import SelectiveResult, Threshold
from judge.calibration.signals import SignalTable, signals_from_verdicts
from judge.errors import InputError
from judge.judging.pairs_io import read_pairs
from judge.judging.runner import read_results
from judge.judging.verdict import JudgeConfig, Verdict

__all__ = ["Evaluation", "Recalibration", "evaluate_results", "fit_from_results", "load_labels"]

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


def load_labels(path: str | Path) -> dict[str, PairLabel]:
    """Labels of a pair file by pair id (pairs without a label are refused: evaluation needs them all)."""
    labels: dict[str, PairLabel] = {}
    for rec in read_pairs(path):
        if rec.label is None:
            raise InputError(f"{path}:{rec.line}: pair {rec.pair.id!r} has no label (A, B or tie)")
        labels[rec.pair.id or ""] = PairLabel(rec.label, rec.source or "(no source)",
                                              len(rec.pair.response_a.text), len(rec.pair.response_b.text))
    if not labels:
        raise InputError(f"{path}: no labelled pairs")
    return labels


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


def evaluate_results(labelled: str | Path, results: str | Path, *, recalibrate: str | None = "auto",
                     n_folds: int = 5, seed: int = 0, n_boot: int = 1000, target: float = 0.9,
                     delta: float = 0.1, split_repeats: int = 1) -> Evaluation:
    """Report a results file against its labelled pair file: raw, and recalibrated with k-fold cross-fitting.

    Args:
        labelled: The labelled pair file (id, prompt, response_a, response_b, label).
        results: Verdicts (`judge run` output) for some or all of those pairs.
        recalibrate: ``auto`` (choose by cross-validated log loss inside every fold), a method name, or None.
        n_folds, seed: Cross-fitting folds and seed (also seeds the bootstrap).
        n_boot: Bootstrap replicates for every interval.
        target, delta: Selective judging's target agreement and risk tolerance.
        split_repeats: With more than 1, the recalibrated ECE, Brier score and log loss are also computed over
            this many random fold splits (seeds ``seed``, ``seed + 1``, ...; each a full cross-fit) and
            summarised as mean, min and max in ``recalibration.splits``.
    """
    if split_repeats < 1:
        raise ValueError(f"split_repeats must be at least 1, got {split_repeats}")
    labels = load_labels(labelled)
    verdicts = read_results(results)
    if not verdicts:
        raise InputError(f"{results}: no results to evaluate")
    config = _one_config(verdicts, results)
    joined = join(verdicts, labels)
    if not joined.rows:
        raise InputError(f"{results}: none of its {len(verdicts)} results is for a pair in {labelled}")
    if joined.unlabelled:
        log.warning("%d results are for pairs not in %s (ignored)", len(joined.unlabelled), labelled)
    def report(variant: str, probs: np.ndarray | None = None,
               selective: tuple[SelectiveResult, list[Threshold]] | None = None) -> EvalReport:
        return evaluate(joined.rows, probs=probs, variant=variant, n_missing=len(joined.missing), n_boot=n_boot,
                        seed=seed, target=target, delta=delta, selective_result=selective)

    raw = report("raw")
    out = Evaluation(labelled=str(labelled), results=str(results), judge=calibration_key(config), raw=raw,
                     unlabelled_results=len(joined.unlabelled))
    if recalibrate is None or recalibrate == "none":
        return out
    _, table, labs = _scored(joined.rows)
    try:
        folds = fit_folds(table, labs, method=recalibrate, n_folds=n_folds, seed=seed)
    except ValueError as exc:
        out.recalibration = Recalibration(skipped=str(exc))
        return out
    probs, chosen = folds.probabilities(), folds.methods
    variant = f"recalibrated ({recalibrate}, {n_folds}-fold cross-fitted)"
    out.recalibrated = report(variant, probs, folds.abstention(target=target, delta=delta))
    out.recalibration = Recalibration(method=recalibrate, fold_methods=chosen, n_folds=n_folds, seed=seed)
    if split_repeats > 1:
        per_split = [point_metrics(probs, labs)] + [
            point_metrics(fit_folds(table, labs, method=recalibrate, n_folds=n_folds, seed=seed + r).probabilities(),
                          labs) for r in range(1, split_repeats)]
        for name in per_split[0]:
            vals = np.asarray([d[name] for d in per_split])
            out.recalibration.splits[name] = SplitSpread(mean=float(vals.mean()), min=float(vals.min()),
                                                         max=float(vals.max()), n_splits=split_repeats)
    return out


def fit_from_results(labelled: str | Path, results: str | Path, *, method: str = "auto", n_folds: int = 5,
                     seed: int = 0, target: float | None = 0.9, delta: float = 0.1) -> Calibrator:
    """Fit a calibrator for the judge configuration of a results file, on every labelled verdict in it.

    The abstention threshold (when ``target`` is given) is chosen on this calibrator's own confidences for the
    labelled verdicts (`abstention_threshold`: the scale it will be applied on); `evaluate_results` reports how
    the same procedure does on held-out folds (`CrossFit.abstention`).
    """
    labels = load_labels(labelled)
    verdicts = read_results(results)
    if not verdicts:
        raise InputError(f"{results}: no results to calibrate on")
    config = _one_config(verdicts, results)
    joined = join(verdicts, labels)
    _, table, labs = _scored(joined.rows)
    versions = {r.verdict.rulebook_version for r in joined.rows}
    try:
        cal = fit_calibrator(table, labs, config, rulebook_version=versions.pop() if len(versions) == 1 else None,
                             method=method, n_folds=n_folds, seed=seed)
    except ValueError as exc:
        raise InputError(f"cannot fit a calibrator on {results}: {exc}") from exc
    if target is None:
        return cal
    th = abstention_threshold(cal.predict(table), labs, target=target, delta=delta)
    return cal.model_copy(update={"abstain": {
        "threshold": th.threshold if th.certified else None, "target": target, "delta": delta,
        "certified": th.certified, "n_calibration": th.n_calibration, "n_kept": th.n_kept,
        "lower_bound": th.lower_bound}})
