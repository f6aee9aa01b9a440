"""The demo's optical vs optical + radar figures: cloud plots scored on the true cover."""

from __future__ import annotations

from training.demo_radar import DemoRun, comparison_table, verdict_figures


def test_plots_under_persistent_cloud_are_scored_on_the_true_land_cover() -> None:
    truth = [{"verdict": "deforestation_free"}, {"verdict": "deforestation_detected"},
             {"verdict": "insufficient_data"}, {"verdict": "insufficient_data"}]
    cover = [{"verdict": "deforestation_free"}, {"verdict": "deforestation_detected"},
             {"verdict": "deforestation_detected"}, {"verdict": "deforestation_free"}]
    optical = DemoRun("optical only", [
        {"verdict": "deforestation_free"}, {"verdict": "deforestation_detected"},
        {"verdict": "insufficient_data"}, {"verdict": "insufficient_data"}], 90.0)
    both = DemoRun("optical + radar", [
        {"verdict": "deforestation_free", "radar_only_fraction": 0.0},
        {"verdict": "needs_review", "radar_only_fraction": 0.1},
        {"verdict": "deforestation_detected", "radar_only_fraction": 1.0},
        {"verdict": "deforestation_detected", "radar_only_fraction": 1.0}], 110.0)
    rows = [verdict_figures(run, truth, cover, 100.0) for run in (optical, both)]
    assert rows[0]["cloud_plots"] == 2 and rows[0]["cloud_with_verdict"] == 0
    assert rows[0]["agree"] == 2 and abs(rows[0]["loss_vs_truth"] + 0.1) < 1e-9
    assert rows[1]["cloud_with_verdict"] == 2 and rows[1]["cloud_agree"] == 1
    assert rows[1]["agree"] == 2 and rows[1]["needs_review"] == 1
    assert abs(rows[1]["mean_radar_only_fraction"] - 0.525) < 1e-9
    assert comparison_table(rows).row_count == 2
