"""Accuracy and area estimation from a reference sample (Olofsson et al. 2013, 2014).

Stratified random sampling with the map classes as strata: the error matrix of sample
counts (rows: map class, columns: reference class) is turned into area proportions
``p_ij = W_i n_ij / n_i.``, from which the stratified estimators give overall, user's
and producer's accuracy with standard errors, and each class's area with a 95%
confidence interval. References:

- Olofsson, P., Foody, G. M., Stehman, S. V., Woodcock, C. E. (2013). Making better use
  of accuracy data in land change studies. Remote Sens. Environ. 129, 122-131.
- Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder,
  M. A. (2014). Good practices for estimating area and assessing accuracy of land
  change. Remote Sens. Environ. 148, 42-57 (equations 2-10, worked example in section 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Two-sided 95% normal quantile.
Z95 = 1.96  # as in Olofsson et al. (2014)


@dataclass(frozen=True)
class AreaEstimate:
    """Stratified accuracy and area estimates.

    Attributes:
        classes: Class names, in matrix order.
        proportions: Error matrix in estimated area proportions (map rows, ref columns).
        overall: Overall accuracy and its standard error.
        users: User's accuracy per class (precision of the map class).
        users_se: Its standard errors.
        producers: Producer's accuracy per class (recall of the reference class).
        producers_se: Its standard errors.
        area: Estimated area per class (units of ``mapped_area``).
        area_se: Its standard errors.
    """

    classes: list[str]
    proportions: NDArray[np.float64]
    overall: float
    overall_se: float
    users: NDArray[np.float64]
    users_se: NDArray[np.float64]
    producers: NDArray[np.float64]
    producers_se: NDArray[np.float64]
    area: NDArray[np.float64]
    area_se: NDArray[np.float64]

    @property
    def area_ci95(self) -> NDArray[np.float64]:
        """Half-width of the 95% confidence interval of each class's area."""
        return Z95 * self.area_se

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form, with 95% confidence half-widths."""
        return {
            "overall_accuracy": self.overall,
            "overall_accuracy_ci95": Z95 * self.overall_se,
            "classes": {
                name: {
                    "users_accuracy": float(self.users[i]),
                    "users_accuracy_ci95": float(Z95 * self.users_se[i]),
                    "producers_accuracy": float(self.producers[i]),
                    "producers_accuracy_ci95": float(Z95 * self.producers_se[i]),
                    "area": float(self.area[i]),
                    "area_ci95": float(self.area_ci95[i]),
                }
                for i, name in enumerate(self.classes)
            },
            "error_matrix_proportions": self.proportions.tolist(),
        }


def stratified_estimate(
    counts: ArrayLike, mapped_area: ArrayLike, classes: Sequence[str] | None = None
) -> AreaEstimate:
    """Olofsson et al. (2014) estimators from an error matrix of sample counts.

    Args:
        counts: (q, q) sample counts, rows = map class (stratum), columns = reference.
        mapped_area: Mapped area of each class (any unit; estimates come in it).
        classes: Names of the q classes.

    Returns:
        The estimates. Strata with fewer than 2 samples contribute no variance (their
        standard errors are undefined and taken as 0, as in common implementations).

    Raises:
        ValueError: If shapes disagree or a stratum with mapped area has no sample.
    """
    n = np.asarray(counts, np.float64)
    a_m = np.asarray(mapped_area, np.float64)
    q = n.shape[0]
    if n.shape != (q, q) or a_m.shape != (q,):
        raise ValueError(f"counts must be (q, q) and mapped_area (q,); got {n.shape}, "
                         f"{a_m.shape}")
    n_i = n.sum(1)
    if np.any((n_i == 0) & (a_m > 0)):
        empty = [i for i in range(q) if n_i[i] == 0 and a_m[i] > 0]
        raise ValueError(f"map classes {empty} have mapped area but no sample")
    total = a_m.sum()
    w = a_m / total
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_i[:, None] > 0, n / n_i[:, None], 0.0)  # n_ij / n_i.
        p = w[:, None] * share  # eq. 4
        overall = float(np.trace(p))  # eq. 1
        users = np.diag(p) / p.sum(1)  # eq. 2
        producers = np.diag(p) / p.sum(0)  # eq. 3
        dof = np.where(n_i > 1, n_i - 1, np.inf)
        var_users = np.nan_to_num(users * (1 - users) / dof)
        var_overall = float(np.sum(w**2 * var_users))  # eq. 5
        # Producer's accuracy variance (Olofsson et al. 2013, eq. 7).
        n_hat = a_m[:, None] * share  # estimated population counts N_i n_ij / n_i.
        n_j = n_hat.sum(0)
        var_producers = np.zeros(q)
        for j in range(q):
            term1 = a_m[j] ** 2 * (1 - producers[j]) ** 2 * var_users[j]
            others = [i for i in range(q) if i != j]
            term2 = producers[j] ** 2 * sum(
                a_m[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i] for i in others
            )
            var_producers[j] = (term1 + term2) / n_j[j] ** 2 if n_j[j] > 0 else 0.0
        # Area proportion standard error (eq. 10), then area (eqs. 8, 9, 11).
        se_p = np.sqrt(np.sum(w[:, None] ** 2 * share * (1 - share) / dof[:, None], 0))
    return AreaEstimate(
        classes=list(classes) if classes else [str(i) for i in range(q)],
        proportions=p,
        overall=overall,
        overall_se=float(np.sqrt(var_overall)),
        users=np.nan_to_num(users),
        users_se=np.sqrt(var_users),
        producers=np.nan_to_num(producers),
        producers_se=np.sqrt(np.nan_to_num(var_producers)),
        area=p.sum(0) * total,
        area_se=se_p * total,
    )


def sample_sizes(
    mapped_area: ArrayLike, users_accuracy: ArrayLike, target_se_overall: float = 0.01,
    min_per_stratum: int = 50, rare_allocation: int = 100,
) -> NDArray[np.int64]:
    """Sample size per stratum following Olofsson et al. (2014), section 5.1.

    The total is Cochran's n = (Σ W_i S_i / S(Ô))² with S_i = sqrt(U_i (1 - U_i)) from
    anticipated user's accuracies; strata then get ``rare_allocation`` samples if they
    are small (W_i < 10%) and the rest proportionally, never fewer than
    ``min_per_stratum``.
    """
    w = np.asarray(mapped_area, np.float64)
    w = w / w.sum()
    u = np.asarray(users_accuracy, np.float64)
    s = np.sqrt(u * (1 - u))
    total = int(np.ceil((np.sum(w * s) / target_se_overall) ** 2))
    small = w < 0.1
    sizes = np.where(small, rare_allocation, 0).astype(float)
    remaining = max(total - sizes.sum(), 0)
    if (~small).any():
        sizes[~small] = remaining * w[~small] / w[~small].sum()
    return np.maximum(np.ceil(sizes), min_per_stratum).astype(np.int64)
