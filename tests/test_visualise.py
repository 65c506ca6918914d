"""Attention overlays are drawn the authors' way: upsampled, cut at 0.3 of the maximum, laid over the tile."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mdnet_utils.visualise import diagnosis_card, row_label, show_overlay, threshold_map, upsample_map  # noqa: E402


def test_a_grid_map_is_upsampled_to_the_image_row_major():
    values = torch.zeros(4)
    values[1] = 1.0                                   # row 0, column 1 of a 2 x 2 grid
    m = upsample_map(values, (2, 2), (8, 8))
    assert m.shape == (8, 8)
    assert np.unravel_index(m.argmax(), m.shape)[1] >= 4 and np.unravel_index(m.argmax(), m.shape)[0] < 4


def test_everything_below_three_tenths_of_the_maximum_is_cut():
    m = np.array([[0.0, 0.29], [0.3, 1.0]])
    cut = threshold_map(m)
    assert cut.mask.tolist() == [[True, True], [False, False]]


def test_overlays_and_cards_draw_without_a_display():
    tile = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    fig, ax = plt.subplots()
    show_overlay(ax, tile, torch.rand(16), (4, 4), title="w", mask=torch.zeros(16, 16).bool())
    plt.close(fig)
    card = diagnosis_card(tile, diagnosis="high grade", confidence=0.9, report="a b c.", cam=torch.rand(16),
                          words=["a", "b", "c", "."], alphas=torch.rand(4, 16).softmax(1), grid=(4, 4),
                          positions=[0, 2], n_words=3)
    assert len(card.axes) == 2 + 3 + 1
    plt.close(card)


def test_a_row_label_stands_upright_left_of_its_row_and_wraps_long_names():
    fig, ax = plt.subplots()
    row_label(ax, "3 · Eq. (14) + content (our reading)")
    (text,) = ax.texts
    assert text.get_rotation() == 90 and text.get_position()[0] < 0 and text.get_ha() == "right"
    assert all(len(line) <= 20 for line in text.get_text().splitlines()) and "\n" in text.get_text()
    plt.close(fig)
