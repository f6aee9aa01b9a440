"""The small-real-data recipe: CE + Dice, warm-up + cosine, reflectance jitter, configs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from cacaomap.main import main
from training.data.datamodule import LandCoverDataModule
from training.trainers.losses import CrossEntropyDiceLoss
from training.trainers.segmentation import LandCoverSegmentationTask, warmup_cosine

EXPERIMENTS = Path(__file__).parents[3] / "experiments"


def test_ce_dice_ignores_nodata_and_rewards_overlap() -> None:
    loss = CrossEntropyDiceLoss(num_classes=3, ignore_index=0)
    target = torch.tensor([[[1, 1], [2, 0]]])
    right = torch.nn.functional.one_hot(torch.tensor([[[1, 1], [2, 2]]]), 3)
    right = right.permute(0, 3, 1, 2).float() * 8
    wrong = right[:, [0, 2, 1]]
    assert loss(right, target) < 0.05 < loss(wrong, target)
    # the nodata pixel's logits do not matter
    changed = right.clone()
    changed[0, :, 1, 1] = torch.tensor([9.0, -9.0, -9.0])
    assert loss(changed, target) == pytest.approx(float(loss(right, target)))


def test_balanced_weights_go_into_the_cross_entropy_term() -> None:
    task = LandCoverSegmentationTask(loss="ce+dice", class_weights=[0.0, 1.0, 2.0, 3.0, 4.0,
                                                                    5.0], num_classes=6)
    assert task.criterion.weight.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert task.hparams["loss"] == "ce+dice"


def test_warmup_then_cosine_to_the_floor() -> None:
    factors = [warmup_cosine(s, warmup=10, total=110) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.505)
    assert factors[110] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_jitter_moves_observed_reflectance_only_and_stays_physical(landscape: Path) -> None:
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"), brightness=0.05,
                             contrast=0.2)
    torch.manual_seed(0)
    image = torch.full((64, 2, 4, 4), 300.0)
    image[:, :, 0, 0] = 0  # unobserved
    valid = image[:, 0] > 0
    out = dm._jitter(image, valid)
    assert (out[:, :, 0, 0] == 0).all()
    gains = out[:, 0, 1, 1] - 300
    assert gains.abs().max() <= 0.2 * 300 + 0.05 * 10000 + 1e-3
    assert gains.std() > 10  # it does jitter
    assert (out >= 0).all()
    still = LandCoverDataModule(images=str(landscape / "images"),
                                labels=str(landscape / "labels"))
    assert torch.equal(still._jitter(image, valid), image)


def test_holes_are_rectangles_of_no_data_in_a_share_of_patches(landscape: Path) -> None:
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"), holes=0.5)
    torch.manual_seed(0)
    valid = torch.ones((400, 64, 64), dtype=torch.bool)
    holes = dm._holes(valid)
    holed = holes.flatten(1).any(1)
    assert 0.4 < holed.float().mean() < 0.6
    for patch in holes[holed][:20]:
        rows = patch.any(1).nonzero().ravel()
        cols = patch.any(0).nonzero().ravel()
        # One rectangle, 15-50 % of the side.
        assert patch.sum() == len(rows) * len(cols)
        assert 0.15 * 64 - 1 <= len(rows) <= 0.5 * 64 and 0.15 * 64 - 1 <= len(cols) <= 32
    none = LandCoverDataModule(images=str(landscape / "images"),
                               labels=str(landscape / "labels"))
    assert not none._holes(valid).any()


@pytest.mark.parametrize("config", ["small_real_chips.yaml", "demo.yaml",
                                    "unet_resnet18.yaml"])
def test_experiment_configs_are_valid(config: str, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "fit", "--config", str(EXPERIMENTS / config), "--print_config"])
    assert stop.value.code in (0, None)
    assert "class_path: training.data.datamodule.LandCoverDataModule" in (
        capsys.readouterr().out)


def test_the_recipe_on_the_rondonia_data_is_a_valid_config(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "fit", "--config", str(EXPERIMENTS / "small_real_chips.yaml"),
              "--data", str(EXPERIMENTS / "data" / "rondonia.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "label_kind: vector" in printed and "loss: ce+dice" in printed
    assert "split_by: block" in printed
