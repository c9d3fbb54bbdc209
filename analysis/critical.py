"""The critical batch size, fitted from measured steps and examples to a target.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training", §2) predict

- (S/S_min − 1)(E/E_min − 1) = 1 between the steps S and the examples E = B·S needed
  to reach a target, with B_crit = E_min/S_min;
- ε_opt(B) = ε_max/(1 + B_noise/B) for the best learning rate at batch size B.

Both are straight lines in 1/B, fitted here by least squares on *relative*
residuals (each residual divided by the measured value), because the
measurements carry multiplicative errors (a learning-rate grid is logarithmic,
steps-to-target are counted at evaluation intervals) and span orders of magnitude:
an unweighted fit would let the smallest batch sizes decide everything.

Pure numpy; a fit that cannot be made returns NaN values and says why. A fit that can
be made but is degenerate — a parameter at its bound (B_noise = 0 when the best learning
rate does not vary with B), or a batch-size scale 100× beyond the batch sizes measured
(B_noise = 2.9e-17) — is a failed fit too: the data do not determine that parameter.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class CriticalFit(NamedTuple):
    s_min: float    # fewest steps to the target (infinite batch)
    e_min: float    # fewest examples to the target (batch size → 0)
    b_crit: float   # E_min / S_min, the critical batch size
    n_points: int   # usable points the fit used
    reason: str     # "" when the fit is valid, else why the values are NaN


class LrScalingFit(NamedTuple):
    eps_max: float  # the best learning rate as B → ∞
    b_noise: float  # the batch size at which ε_opt reaches half of ε_max
    n_points: int
    reason: str


DEGENERATE_FACTOR = 100.0  # a fitted batch-size scale this far outside the measured range is not determined


def degenerate_reason(values: dict, b_min: float, b_max: float) -> str:
    """Why fitted values cannot be reported ("" when they can).

    Args:
        values: name -> fitted value; names starting with "B" are batch-size scales.
        b_min, b_max: the smallest and largest batch size the fit used.
    """
    for name, v in values.items():
        if not np.isfinite(v) or v <= 0:
            return f"non-physical fit ({name} = {v:.3g}): it must be positive and finite"
    for name, v in values.items():
        if name.startswith("B") and not b_min / DEGENERATE_FACTOR <= v <= b_max * DEGENERATE_FACTOR:
            return (f"degenerate fit ({name} = {v:.3g}, more than {DEGENERATE_FACTOR:.0f}× outside the batch sizes "
                    f"measured, {b_min:.0f}–{b_max:.0f}): the data do not determine it")
    return ""


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Intercept a and slope b of y ≈ a + b·x, minimising Σ ((a + b·x)/y − 1)² (y > 0)."""
    w = 1.0 / y
    A = np.stack([w, w * x], axis=1)  # (n, 2): the relative residual is A @ (a, b) − 1
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    return float(a), float(b)


def _usable(u, v, min_points: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Keep pairs where both are finite and positive; a reason when too few remain."""
    u, v = np.asarray(u, float).ravel(), np.asarray(v, float).ravel()
    if u.shape != v.shape:
        raise ValueError(f"need one value of each per point, got {u.size} and {v.size}")
    keep = np.isfinite(u) & np.isfinite(v) & (u > 0) & (v > 0)
    u, v = u[keep], v[keep]
    if u.size < min_points:
        return u, v, f"{u.size} usable points (finite, positive), need {min_points}"
    return u, v, ""


def fit_steps_examples(S, E, min_points: int = 3) -> CriticalFit:
    """Fit (S/S_min − 1)(E/E_min − 1) = 1 to steps and examples to a target.

    With E = B·S the relation is S = S_min + E_min/B, a straight line in 1/B (equivalently
    1/E = 1/E_min − (S_min/E_min)·(1/S)). It is fitted in the first form, where the
    measured S carries the noise and B = E/S is exact: in the (1/S, 1/E) form the same
    noise moves both coordinates, and at large B, where S ≈ S_min, a 2% error in S
    becomes an error of tens of percent in E_min.

    Args:
        S: steps to the target, one per batch size (best learning rate each); values
            ≤ 0 or non-finite (−1 = never reached) are dropped.
        E: examples to the target, B·S, same length.
        min_points: fewest usable points to fit (2 determine the line exactly, with
            nothing left to check it).
    Returns:
        ``CriticalFit(s_min, e_min, b_crit, n_points, reason)``.
    """
    S, E, reason = _usable(S, E, min_points)
    nan = float("nan")
    if not reason and np.ptp(S / E) <= 1e-12 * np.max(S / E):
        reason = "one batch size only (E/S does not vary): S_min and E_min are not identifiable"
    if reason:
        return CriticalFit(nan, nan, nan, int(S.size), reason)
    s_min, e_min = _line_fit(S / E, S)  # x = 1/B
    if s_min <= 0 or e_min <= 0:
        return CriticalFit(nan, nan, nan, int(S.size),
                           f"non-physical fit (S_min = {s_min:.3g}, E_min = {e_min:.3g}): "
                           "both must be positive")
    B = E / S
    reason = degenerate_reason({"B_crit": e_min / s_min}, B.min(), B.max())
    if reason:
        return CriticalFit(nan, nan, nan, int(S.size), reason)
    return CriticalFit(s_min, e_min, e_min / s_min, int(S.size), "")


def fit_lr_scaling(B, eps, min_points: int = 3) -> LrScalingFit:
    """Fit ε_opt(B) = ε_max/(1 + B_noise/B) to the best learning rate per batch size.

    The relation is the straight line 1/ε = 1/ε_max + (B_noise/ε_max)·(1/B).

    Args:
        B: batch sizes.
        eps: the best learning rate at each; non-positive or non-finite points are dropped.
        min_points: fewest distinct usable batch sizes to fit.
    Returns:
        ``LrScalingFit(eps_max, b_noise, n_points, reason)``; B_noise = 0 means the best
        learning rate does not depend on the batch size.
    """
    B, eps, reason = _usable(B, eps, min_points)
    nan = float("nan")
    if not reason and np.unique(B).size < min_points:
        reason = f"{np.unique(B).size} distinct batch sizes, need {min_points}"
    if reason:
        return LrScalingFit(nan, nan, int(B.size), reason)
    a, b = _line_fit(1.0 / B, 1.0 / eps)  # a = 1/ε_max, b = B_noise/ε_max
    if a <= 0:
        return LrScalingFit(nan, nan, int(B.size),
                            f"no saturation (1/ε_max = {a:.3g}): the best learning rate still grows "
                            "in proportion to B, so ε_max is beyond the batch sizes measured")
    if b < -1e-9 * a * B.min():  # B_noise below −1e-9·B_min: more than rounding
        return LrScalingFit(nan, nan, int(B.size),
                            f"non-physical fit (B_noise/ε_max = {b:.3g}): the best learning rate "
                            "falls as the batch grows")
    b = max(b, 0.0)  # within rounding of 0 (checked above): B_noise at its bound, not below it
    if b / a < B.min() / DEGENERATE_FACTOR:
        return LrScalingFit(nan, nan, int(B.size),
                            f"degenerate fit (B_noise = {b / a:.3g}, more than {DEGENERATE_FACTOR:.0f}× below the "
                            f"batch sizes measured, {B.min():.0f}–{B.max():.0f}): the data do not determine it "
                            "(the best learning rate hardly changes with the batch size)")
    reason = degenerate_reason({"B_noise": b / a}, B.min(), B.max())
    if reason:
        return LrScalingFit(nan, nan, int(B.size), reason + (
            " (the best learning rate hardly changes with the batch size)" if b / a < B.min() else ""))
    return LrScalingFit(1.0 / a, b / a, int(B.size), "")
