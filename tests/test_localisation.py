"""Localisation scores on hand-made maps and masks: all mass inside gives 1, a uniform map the mask's area
share; the pointing game, its chance level, ties, tolerance; empty masks, all-zero maps, upsampling, batches."""
import math

import numpy as np
import pytest
import torch

from mdnet_utils.localisation import (localisation_scores, mass_inside, mass_inside_uniform, pointing_game,
                                      pointing_game_uniform)


def square_mask(size=8, top=2, left=2, side=3):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[top:top + side, left:left + side] = True
    return m


def test_all_mass_inside_scores_one():
    m = square_mask()
    s = torch.rand(8, 8) * m          # positive inside, zero outside
    s[3, 3] = 5.0                     # the maximum, inside
    assert mass_inside(s, m).item() == pytest.approx(1.0)
    assert pointing_game(s, m).item() == 1.0


def test_a_uniform_map_scores_the_area_share():
    m = square_mask()                 # 9 of 64 pixels
    share = 9 / 64
    for s in (torch.ones(8, 8), torch.full((8, 8), 0.3)):
        assert mass_inside(s, m).item() == pytest.approx(share)
        assert pointing_game(s, m).item() == pytest.approx(share)   # a tie over every pixel, split
    assert mass_inside_uniform(m).item() == pytest.approx(share)
    assert pointing_game_uniform(m).item() == pytest.approx(share)


def test_mass_and_pointing_on_a_hand_made_map():
    m = square_mask()
    s = torch.zeros(8, 8)
    s[2, 2], s[7, 7] = 3.0, 1.0       # 3 inside, 1 outside, maximum inside
    assert mass_inside(s, m).item() == pytest.approx(0.75)
    assert pointing_game(s, m).item() == 1.0
    s[7, 7] = 4.0                     # now the maximum is outside
    assert mass_inside(s, m).item() == pytest.approx(3 / 7)
    assert pointing_game(s, m).item() == 0.0


def test_negative_saliency_is_clipped_away():
    m = square_mask()
    s = -torch.ones(8, 8)             # negative evidence everywhere ...
    s[3, 3] = 2.0                     # ... and one positive point, inside
    assert mass_inside(s, m).item() == pytest.approx(1.0)
    assert pointing_game(s, m).item() == 1.0


def test_all_zero_map_falls_back_to_chance_and_empty_mask_is_nan():
    m = square_mask()
    zero = -torch.rand(8, 8)          # all zero after the ReLU
    assert mass_inside(zero, m).item() == pytest.approx(9 / 64)
    assert pointing_game(zero, m).item() == pytest.approx(9 / 64)
    empty = torch.zeros(8, 8)
    scores = localisation_scores(torch.rand(8, 8), empty)
    assert all(math.isnan(v.item()) for v in scores.values())


def test_tolerance_grows_the_mask():
    m = square_mask()                 # rows and columns 2..4
    s = torch.zeros(8, 8)
    s[5, 3] = 1.0                     # one pixel below the mask
    assert pointing_game(s, m).item() == 0.0
    assert pointing_game(s, m, tolerance=1).item() == 1.0
    assert pointing_game_uniform(m, tolerance=1).item() == pytest.approx(25 / 64)


def test_batches_numpy_channel_axis_and_upsampling():
    masks = torch.stack([square_mask(), torch.zeros(8, 8, dtype=torch.bool), torch.ones(8, 8, dtype=torch.bool)])
    sal = torch.zeros(3, 8, 8)
    sal[0, 3, 3] = 1.0
    sal[2] = torch.rand(8, 8)
    out = localisation_scores(sal.numpy(), masks.float().numpy()[:, None])   # arrays, (B, 1, H, W) masks
    assert out["mass_inside"].shape == (3,)
    assert out["mass_inside"][0].item() == pytest.approx(1.0)
    assert math.isnan(out["mass_inside"][1].item())
    assert out["mass_inside"][2].item() == pytest.approx(1.0)   # the mask is the whole image
    assert out["mass_inside_uniform"][2].item() == 1.0
    # a coarse map on a finer mask is upsampled: a constant map stays constant
    assert mass_inside(torch.ones(2, 2), square_mask()).item() == pytest.approx(9 / 64)
    coarse = torch.tensor([[1.0, 0.0], [0.0, 0.0]])             # the top-left quadrant lit
    quadrant = torch.zeros(8, 8, dtype=torch.bool)
    quadrant[:4, :4] = True
    assert pointing_game(coarse, quadrant).item() == 1.0
    assert mass_inside(coarse, quadrant).item() > 0.5
    # one map scored against several masks
    assert pointing_game(np.ones((8, 8)), masks[[0, 2]]).tolist() == pytest.approx([9 / 64, 1.0])


def test_a_saliency_larger_than_the_mask_is_refused():
    with pytest.raises(ValueError, match="larger than the mask"):
        mass_inside(torch.rand(16, 16), square_mask())
