"""Pictures of what a report generator did: per-word attention overlays and a diagnosis card per tile.

The overlay follows the authors' later code: the attention map of a word, reshaped to the feature grid,
upsampled to the image (bilinear), everything below 0.3 of its maximum cut away, the rest laid over the
image. Matplotlib only; every function draws into axes it is given (or a new figure) and returns it.
"""
from __future__ import annotations

import textwrap

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["upsample_map", "threshold_map", "show_overlay", "attention_strip", "row_label", "diagnosis_card"]


def upsample_map(values: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A map of N = grid[0] grid[1] values (row-major) as an image of ``size`` (H, W), bilinear."""
    m = torch.as_tensor(values, dtype=torch.float32).reshape(1, 1, *grid)
    return F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def threshold_map(m: np.ndarray, fraction: float = 0.3) -> np.ma.MaskedArray:
    """``m`` with everything below ``fraction`` of its maximum masked out (the authors' 0.3 x max)."""
    return np.ma.masked_less(m, fraction * float(m.max()))


def _image(tile) -> np.ndarray:
    """A (3, H, W) uint8 or float tensor as an (H, W, 3) float array in [0, 1]."""
    t = torch.as_tensor(tile)
    t = t.float() / 255.0 if not t.is_floating_point() else t.float()
    return t.permute(1, 2, 0).clamp(0, 1).numpy()


def show_overlay(ax, tile, values: torch.Tensor, grid: tuple[int, int], *, title: str = "",
                 fraction: float = 0.3, cmap: str = "jet", alpha: float = 0.45, mask=None):
    """The tile with a map (attention or CAM) upsampled, thresholded at ``fraction`` x max, overlaid.
    ``mask`` (H, W), if given, is outlined in yellow."""
    image = _image(tile)
    ax.imshow(image)
    ax.imshow(threshold_map(upsample_map(values, grid, image.shape[:2]), fraction), cmap=cmap, alpha=alpha)
    if mask is not None:
        ax.contour(np.asarray(torch.as_tensor(mask).squeeze().float()), levels=[0.5], colors="yellow", linewidths=0.8)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax


def attention_strip(axes, tile, words: list[str], alphas: torch.Tensor, grid: tuple[int, int],
                    positions: list[int], *, mask=None, fraction: float = 0.3):
    """One overlay per chosen word: ``positions`` index ``words`` and the rows of ``alphas``."""
    for ax, pos in zip(axes, positions):
        show_overlay(ax, tile, alphas[pos], grid, title=f"'{words[pos]}'", fraction=fraction, mask=mask)
    for ax in list(axes)[len(positions):]:
        ax.axis("off")
    return axes


def row_label(ax, text: str, *, width: int = 20, fontsize: float = 8):
    """``text`` to the left of ``ax`` (the first axes of a row of overlays), turned upright and wrapped at
    ``width`` characters, so that long labels of stacked rows do not run into each other."""
    ax.text(-0.1, 0.5, textwrap.fill(text, width), transform=ax.transAxes, rotation=90, va="center", ha="right",
            fontsize=fontsize)
    return ax


def diagnosis_card(tile, *, diagnosis: str, confidence: float, report: str, cam: torch.Tensor,
                   words: list[str], alphas: torch.Tensor, grid: tuple[int, int], positions: list[int],
                   truth: str | None = None, mask=None, n_words: int = 6):
    """One figure per tile: the image, the predicted diagnosis with its confidence, the generated report,
    the CAM of the predicted class, and the attention of up to ``n_words`` chosen words."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.0 * (n_words + 2), 4.4))
    grid_spec = fig.add_gridspec(2, n_words + 2, height_ratios=[1.0, 0.9])
    ax = fig.add_subplot(grid_spec[0, 0])
    ax.imshow(_image(tile)); ax.axis("off")
    ax.set_title(f"{diagnosis} ({confidence:.0%})" + (f"\ntruth: {truth}" if truth else ""), fontsize=9)
    show_overlay(fig.add_subplot(grid_spec[0, 1]), tile, cam, grid, title="CAM of the diagnosis", mask=mask)
    attention_strip([fig.add_subplot(grid_spec[0, 2 + k]) for k in range(n_words)], tile, words, alphas, grid,
                    positions[:n_words], mask=mask)
    text = fig.add_subplot(grid_spec[1, :])
    text.axis("off")
    text.text(0.0, 0.95, "\n".join(textwrap.wrap(report, 150)), va="top", ha="left", fontsize=9, family="monospace")
    return fig
