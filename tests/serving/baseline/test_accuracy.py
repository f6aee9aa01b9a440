"""The stratified estimator against a published worked example."""

import numpy as np
import pytest

from serving.baseline.accuracy import sample_sizes, stratified_estimate

# Olofsson, Foody, Herold, Stehman, Woodcock & Wulder (2014), "Good practices for
# estimating area and assessing accuracy of land change", Remote Sens. Environ. 148,
# 42-57: Table 8 (error matrix of sample counts; rows = map, columns = reference) and the
# estimates of section 5 (p. 54). Mapped areas are Landsat pixels of 0.09 ha.
TABLE_8 = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
MAPPED_HA = np.array([200_000, 150_000, 3_200_000, 6_450_000]) * 0.09
CLASSES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]


def test_reproduces_olofsson_2014_table_8_areas_and_accuracies() -> None:
    e = stratified_estimate(TABLE_8, MAPPED_HA, CLASSES)
    # Areas and 95% confidence intervals, published to the hectare.
    assert np.round(e.area).tolist() == [21_158, 11_686, 285_770, 581_386]
    assert np.round(e.area_ci95).tolist() == [6_158, 3_756, 15_510, 16_282]
    # Accuracies, published to two decimals.
    assert np.round(e.users, 2).tolist() == [0.88, 0.73, 0.93, 0.96]
    assert np.round(1.96 * e.users_se, 2).tolist() == [0.07, 0.10, 0.04, 0.02]
    assert np.round(e.producers, 2).tolist() == [0.75, 0.85, 0.93, 0.96]
    assert round(e.overall, 2) == 0.95 and round(1.96 * e.overall_se, 2) == 0.02
    # The estimated proportions sum to one and the areas to the mapped total.
    assert e.proportions.sum() == pytest.approx(1.0)
    assert e.area.sum() == pytest.approx(MAPPED_HA.sum())


def test_sample_size_follows_cochran_as_in_the_paper() -> None:
    # Section 5.1: anticipated user's accuracies 0.7, 0.6, 0.9, 0.95 and a target
    # standard error of 0.01 for overall accuracy give n = 641.
    sizes = sample_sizes(MAPPED_HA, [0.7, 0.6, 0.9, 0.95], target_se_overall=0.01,
                         rare_allocation=75)
    assert sizes[:2].tolist() == [75, 75]
    assert abs(int(sizes.sum()) - 641) <= 2


def test_empty_stratum_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sample"):
        stratified_estimate([[5, 0], [0, 0]], [10.0, 20.0])
