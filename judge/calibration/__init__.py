"""Calibration and agreement metrics for judge verdicts (pure functions; see :mod:`judge.calibration.metrics`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge.calibration.metrics import (
        OUTCOMES,
        BootstrapCI,
        CalibrationError,
        HighConfidenceErrors,
        LengthPreference,
        NullECE,
        ReliabilityBin,
        RiskCoveragePoint,
        accuracy,
        accuracy_without_ties,
        aurc,
        auroc,
        bootstrap_ci,
        brier_binary,
        brier_multiclass,
        cohen_kappa,
        confusion_matrix,
        ece,
        ece_if_calibrated,
        ece_null_draws,
        length_preference,
        log_loss_binary,
        log_loss_multiclass,
        position_consistency,
        risk_coverage,
        wrong_at_high_confidence,
    )

__all__ = [
    "OUTCOMES",
    "BootstrapCI",
    "CalibrationError",
    "HighConfidenceErrors",
    "LengthPreference",
    "NullECE",
    "ReliabilityBin",
    "RiskCoveragePoint",
    "accuracy",
    "accuracy_without_ties",
    "aurc",
    "auroc",
    "bootstrap_ci",
    "brier_binary",
    "brier_multiclass",
    "cohen_kappa",
    "confusion_matrix",
    "ece",
    "ece_if_calibrated",
    "ece_null_draws",
    "length_preference",
    "log_loss_binary",
    "log_loss_multiclass",
    "position_consistency",
    "risk_coverage",
    "wrong_at_high_confidence",
]


def __getattr__(name: str) -> Any:
    # The metrics (scipy, scikit-learn) load on first use: judging with a calibrator needs none of them.
    if name in __all__:
        from judge.calibration import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'judge.calibration' has no attribute {name!r}")
