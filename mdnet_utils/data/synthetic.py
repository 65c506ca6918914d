"""The tile renderer: five grades (and focus) in, an H&E-like tile and its ground-truth masks out.

How a tile is drawn, in the order of the code:

1. **Stains.** Colours come from optical densities, as in a real stained slide: every pixel holds
   a hematoxylin and an eosin concentration, and RGB = exp(-(c_H h + c_E e)) with the standard
   H&E stain vectors (Ruifrok & Johnston 2001). Hematoxylin (blue-purple) marks nuclei, eosin
   (pink) cytoplasm and stroma.
2. **Tissue axis.** A basement membrane crosses the tile near one edge; stroma lies beyond it,
   urothelium on this side. Its normal is the axis nuclei align to when polarity is preserved.
3. **Lesion.** When any feature is abnormal, an irregular blob (the lesion) holds the abnormal
   cells; outside it the epithelium is normal. It covers a share of the tile drawn per tile from
   ``LESION_SHARE`` (22-38 %), so that "where is the finding" has a sharp answer: a map that
   looks only at the lesion puts 1 / share times the uniform density there. Its mask is saved.
4. **Cells.** Nuclei sit on a jittered hexagonal lattice, denser in the lesion with crowding;
   each cell has a little cytoplasm and a faint border (nearest-two-centres test, a Voronoi edge).
5. **Nuclei.** Elongated ellipses; pleomorphism spreads their size, shape and darkness; polarity
   sets how far their long axes stray from the tissue axis; prominent nucleoli are eosinophilic
   dots inside them; mitotic figures are dark irregular clumps (their mask is saved).
6. **Focus.** An out-of-focus tile is blurred: it is the "insufficient information" class.

Everything is driven by one ``numpy.random.Generator``, so a seed gives the same bytes.
All lengths are given for a 64-pixel tile and scaled with the tile size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mdnet_utils.data.grades import FEATURES, grade_index, has_findings

# Ruifrok-Johnston optical-density vectors (R, G, B) of hematoxylin and eosin.
_H = np.array([0.650, 0.704, 0.286], dtype=np.float32)
_E = np.array([0.072, 0.990, 0.105], dtype=np.float32)
_H /= np.linalg.norm(_H)
_E /= np.linalg.norm(_E)

# Per-grade rendering parameters, indexed by grade index (0 = normal). Calibrated so that a small
# CNN (the "grade-reader" reference) reads every grade (see data/README.md for the measured accuracies).
SPACING = (7.2, 5.6, 4.0)            # crowding: lattice spacing of nuclei in the lesion (px)
SIZE_MEAN = (1.0, 1.22, 1.42)        # pleomorphism: mean nucleus size factor
SIZE_SPREAD = (0.06, 0.20, 0.30)     # pleomorphism: log-normal spread of size
SHAPE_IRREGULARITY = (0.0, 0.10, 0.22)  # pleomorphism: amplitude of contour wobble
DARKNESS = (1.0, 1.15, 1.35)         # pleomorphism: hyperchromasia (hematoxylin factor)
ANGLE_NOISE_DEG = (4.0, 20.0, None)  # polarity: spread of nucleus axes (None = uniform)
LATTICE_JITTER = (0.10, 0.18, 0.40)  # polarity: disorder of nucleus positions (share of the spacing)
MITOSES = ((0, 0), (1, 2), (4, 6))   # mitosis: figures per tile (inclusive range)
NUCLEOLI_SHARE = (0.0, 0.85)         # nucleoli: share of lesion nuclei with a visible nucleolus
CROWD_SHRINK = 0.7                   # crowding: nucleus size follows spacing ** this (smaller, still visible)
LATTICE_STRETCH = 1.3                # nuclei stack along the tissue axis (see _lattice)
BLUR_SIGMA = 1.7                     # out of focus: Gaussian blur (px at 64)
LESION_SHARE = (0.22, 0.38)          # lesion: share of the tile, drawn uniformly per tile (mean 30 %)


@dataclass
class Tile:
    """A rendered tile: the RGB image, boolean masks, and what the renderer put where."""

    image: np.ndarray                      # (S, S, 3) uint8
    masks: dict[str, np.ndarray]           # "lesion", "mitosis": (S, S) bool
    nuclei: dict[str, np.ndarray] = field(default_factory=dict)  # per-nucleus centres, axes, angles...
    axis_angle: float = 0.0                # direction nuclei align to when polarity is preserved


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D (or 2-D x channels) array, reflecting at the borders."""
    if sigma <= 0:
        return x
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xp = np.pad(x, pad, mode="reflect")
        n = x.shape[axis]
        sl = [slice(None)] * x.ndim
        out = np.zeros_like(x)
        for i, w in enumerate(k.astype(x.dtype)):
            sl[axis] = slice(i, i + n)
            out += w * xp[tuple(sl)]
        x = out
    return x


def _coarse_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean noise varying smoothly over ``cells`` cells across the tile (bilinear, cheap)."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, endpoint=False, dtype=np.float32)
    i = t.astype(int)
    f = (t - i).astype(np.float32)[:, None]
    rows = grid[i] * (1 - f) + grid[i + 1] * f                      # (size, cells + 1)
    return rows[:, i] * (1 - f.T) + rows[:, i + 1] * f.T


def _lattice(rng: np.random.Generator, size: int, spacing: float, jitter: float, angle: float,
             stretch: float = LATTICE_STRETCH) -> np.ndarray:
    """Jittered hexagonal lattice covering a size x size tile, aligned with the tissue axis.

    Rows run across the axis; along the axis points are ``stretch`` times farther apart (and
    across it ``stretch`` times closer), so elongated nuclei aligned with the axis stack like
    urothelium without overlapping, at the same density as a plain lattice of ``spacing``.
    """
    along, across = spacing * stretch, spacing / stretch
    half = size * 0.75 + spacing
    a = np.arange(-half, half, along * np.sqrt(3) / 2)
    b = np.arange(-half, half, across)
    # Every other row shifted by half a step: a hexagonal lattice.
    b_grid = b[None, :] + rng.random() * across + (np.arange(len(a)) % 2)[:, None] * across / 2
    ab = np.stack([np.broadcast_to(a[:, None], b_grid.shape).ravel(), b_grid.ravel()], axis=1)
    ab = ab + rng.normal(0.0, jitter, ab.shape) * np.array([along, across])
    c, s_ = np.cos(angle), np.sin(angle)
    xy = np.stack([ab[:, 0] * c - ab[:, 1] * s_, ab[:, 0] * s_ + ab[:, 1] * c], axis=1) + size / 2
    keep = (xy > -spacing).all(1) & (xy < size + spacing).all(1)
    return xy[keep]


def _lesion_field(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A smooth irregular bump: its upper level sets are blobs (1 at the centre, falling outwards)."""
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    a, b = rng.uniform(0.40, 0.56, 2) * size
    t = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    wobble = 0.15 * _coarse_noise(rng, size, 4)
    return 1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2) + wobble


def _windows(centres: np.ndarray, radius: int, size: int):
    """Pixels of a square window around each centre: flat index, validity, offsets (float32).

    float32 throughout: numpy's ufunc.at (used to merge windows) is fast only when dtypes match.
    """
    o = np.arange(-radius, radius + 1)
    oy, ox = (a.ravel() for a in np.meshgrid(o, o, indexing="ij"))
    cy = np.rint(centres[:, 1]).astype(np.intp)[:, None] + oy[None]
    cx = np.rint(centres[:, 0]).astype(np.intp)[:, None] + ox[None]
    valid = (cy >= 0) & (cy < size) & (cx >= 0) & (cx < size)
    flat = np.where(valid, cy * size + cx, 0)
    return flat, valid, (cx - centres[:, 0:1]).astype(np.float32), (cy - centres[:, 1:2]).astype(np.float32)


def render_tile(grades: dict[str, str], *, in_focus: bool = True, size: int = 64,
                rng: np.random.Generator, stain: np.ndarray | None = None) -> Tile:
    """Draw one tile showing ``grades`` (a {feature: grade} dict); see the module docstring.

    ``stain`` scales the optical density per RGB channel (a slide's staining batch: tiles of
    one patient share it); by default each tile draws its own.
    """
    for f in FEATURES:
        if f not in grades:
            raise ValueError(f"grades lack the feature {f!r}")
    g = {f: grade_index(f, grades[f]) for f in FEATURES}
    if size < 16:
        raise ValueError(f"tile size {size} is too small; use at least 16 pixels")
    s = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    # --- tissue axis: a basement membrane near one edge, stroma beyond it -----------------
    axis = rng.uniform(0, 2 * np.pi)
    n = np.array([np.cos(axis), np.sin(axis)], dtype=np.float32)      # points into the epithelium
    depth = (xx - size / 2) * n[0] + (yy - size / 2) * n[1] + size * rng.uniform(0.28, 0.42)
    epithelium = depth > 0

    lesion = np.zeros((size, size), bool)
    if has_findings(grades):
        # The lesion is the upper level set of the bump holding the drawn share of the tile's
        # pixels (within the epithelium): its size is controlled, its outline stays irregular.
        lesion_field = np.where(epithelium, _lesion_field(rng, size, yy, xx), -np.inf)
        n_px = min(int(round(rng.uniform(*LESION_SHARE) * size * size)), int(epithelium.sum()))
        lesion = lesion_field >= np.partition(lesion_field.ravel(), -n_px)[-n_px]

    def inside(field_img: np.ndarray, pts: np.ndarray) -> np.ndarray:
        iy = np.clip(np.rint(pts[:, 1]).astype(int), 0, size - 1)
        ix = np.clip(np.rint(pts[:, 0]).astype(int), 0, size - 1)
        on_tile = (pts[:, 0] > -3) & (pts[:, 0] < size + 3) & (pts[:, 1] > -3) & (pts[:, 1] < size + 3)
        return field_img[iy, ix] & on_tile

    # --- cells: normal lattice outside the lesion, crowded lattice inside -------------------
    normal_pts = _lattice(rng, size, SPACING[0] * s, 0.10, axis)
    normal_pts = normal_pts[inside(epithelium & ~lesion, normal_pts)]
    lesion_pts = _lattice(rng, size, SPACING[g["crowding"]] * s, LATTICE_JITTER[g["polarity"]], axis)
    lesion_pts = lesion_pts[inside(lesion, lesion_pts)]
    centres = np.concatenate([normal_pts, lesion_pts]).astype(np.float32)
    in_lesion = np.r_[np.zeros(len(normal_pts), bool), np.ones(len(lesion_pts), bool)]
    k = len(centres)

    # --- nuclei: size, shape, darkness (pleomorphism); orientation (polarity) ---------------
    p = np.where(in_lesion, g["pleomorphism"], 0)
    size_f = np.asarray(SIZE_MEAN)[p] * np.exp(np.asarray(SIZE_SPREAD)[p] * rng.standard_normal(k))
    # Crowded cells are smaller: nuclei shrink with the lattice so that they crowd rather than merge.
    crowd = np.where(in_lesion, SPACING[g["crowding"]] / SPACING[0], 1.0) ** CROWD_SHRINK
    size_f = (np.clip(size_f, 0.6, 2.0) * crowd).astype(np.float32)
    major = 3.2 * s * size_f
    minor = (1.5 * s * size_f * np.exp(0.08 * rng.standard_normal(k))).astype(np.float32)
    irregular = np.asarray(SHAPE_IRREGULARITY)[p]
    dark = np.asarray(DARKNESS)[p] * np.exp(0.06 * rng.standard_normal(k))
    # Polarity: axes spread around the tissue axis, all the more as it is lost; completely lost: at random.
    pol = np.where(in_lesion, g["polarity"], 0)
    spread = np.array([ANGLE_NOISE_DEG[i] or 0.0 for i in range(3)])[pol]
    angles = axis + np.deg2rad(spread) * rng.standard_normal(k)
    lost = pol == 2
    angles[lost] = rng.uniform(0, np.pi, lost.sum())
    harm_phase = rng.uniform(0, 2 * np.pi, (k, 2))

    # Work in windows around each centre instead of over the whole tile (K x window, not K x S^2).
    # Cell borders: a pixel on the edge between its two nearest centres (a Voronoi edge).
    flat, valid, dx, dy = _windows(centres, int(np.ceil(0.85 * SPACING[0] * s)), size)
    dist = np.sqrt(dx ** 2 + dy ** 2)
    big = np.float32(1e6)
    d1 = np.full(size * size, big, np.float32)
    np.minimum.at(d1, flat[valid], dist[valid])
    not_first = valid & (dist > d1[flat] + 1e-6)
    d2 = np.full(size * size, big, np.float32)
    np.minimum.at(d2, flat[not_first], dist[not_first])
    d1, d2 = d1.reshape(size, size), d2.reshape(size, size)
    border = np.clip(1.0 - (d2 - d1) / (0.9 * s), 0, 1) * (d2 < big)

    # Nuclei: an ellipse per centre, its contour wobbling with pleomorphism.
    extent = float((major * (1 + irregular)).max()) if k else 1.0
    flat, valid, dx, dy = _windows(centres, int(np.ceil(extent + 1)), size)
    ca, sa = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = (dx * ca + dy * sa) / major[:, None]
    v = (-dx * sa + dy * ca) / minor[:, None]
    q = np.sqrt(u ** 2 + v ** 2)
    if irregular.any():
        psi = np.arctan2(v, u)
        q = q / (1.0 + irregular[:, None] * (np.cos(2 * psi + harm_phase[:, :1]) * 0.6
                                              + np.cos(3 * psi + harm_phase[:, 1:]) * 0.4))
    # Signed distance to the contour (px, approximately) -> anti-aliased coverage.
    sd = (q - 1.0) * minor[:, None]
    cover = np.clip(0.5 - sd, 0, 1) * valid
    nuc = np.zeros(size * size, np.float32)
    np.maximum.at(nuc, flat.ravel(), (cover * dark[:, None]).astype(np.float32).ravel())
    nuc = nuc.reshape(size, size)

    # Nucleoli: an eosinophilic dot near the centre of a share of the lesion's nuclei.
    nucleolus = np.zeros(size * size, np.float32)
    share = NUCLEOLI_SHARE[g["nucleoli"]]
    has_nl = in_lesion & (rng.random(k) < share)
    if has_nl.any():
        off = rng.normal(0, 0.4 * s, (k, 2))
        r_nl = 1.0 * s * np.sqrt(size_f)[:, None]
        dn = np.sqrt((dx - off[:, :1]) ** 2 + (dy - off[:, 1:]) ** 2)
        dot = np.clip(r_nl + 0.5 - dn, 0, 1) * (valid & has_nl[:, None])
        np.maximum.at(nucleolus, flat.ravel(), dot.astype(np.float32).ravel())
    nucleolus = nucleolus.reshape(size, size)

    # Mitotic figures: dark irregular clumps of chromosomes inside the lesion, each in the clear
    # halo of a dividing cell that has rounded up and pushed its neighbours aside.
    mitosis = np.zeros((size, size), np.float32)
    halo = np.zeros((size, size), np.float32)
    lo, hi = MITOSES[g["mitosis"]]
    n_mit = int(rng.integers(lo, hi + 1)) if hi > 0 else 0
    lesion_idx = np.flatnonzero(in_lesion & (centres[:, 0] >= 2) & (centres[:, 0] < size - 2)
                                & (centres[:, 1] >= 2) & (centres[:, 1] < size - 2))
    mit_at = rng.choice(lesion_idx, size=min(n_mit, len(lesion_idx)), replace=False) if n_mit else []
    for i in mit_at:
        pieces = rng.normal(0, 1.25 * s, (int(rng.integers(5, 9)), 2))
        if rng.random() < 0.5:  # metaphase: chromosomes lined up in a plate
            t = rng.uniform(0, np.pi)
            pieces = np.outer(np.linspace(-2.2, 2.2, len(pieces)) * s, [np.cos(t), np.sin(t)]) \
                + rng.normal(0, 0.35 * s, pieces.shape)
        d = np.sqrt((xx - centres[i, 0] - pieces[:, 1, None, None]) ** 2
                    + (yy - centres[i, 1] - pieces[:, 0, None, None]) ** 2).min(0)
        mitosis = np.maximum(mitosis, np.clip(0.95 * s + 0.5 - d, 0, 1))
        d = np.sqrt((xx - centres[i, 0]) ** 2 + (yy - centres[i, 1]) ** 2)
        halo = np.maximum(halo, np.clip(3.3 * s + 0.5 - d, 0, 1))
    nuc = nuc * (1 - halo)
    border = border * (1 - halo)
    mitosis_mask = mitosis > 0.5
    lesion = lesion | mitosis_mask  # a figure at the lesion's edge still belongs to the lesion

    # --- stains -> colour -------------------------------------------------------------------
    tex = 0.5 * _coarse_noise(rng, size, max(4, size // 3))
    fibres = np.sin(((xx * np.cos(axis + np.pi / 2) + yy * np.sin(axis + np.pi / 2)) / (1.6 * s))
                    + 1.2 * _coarse_noise(rng, size, 8))
    stroma_e = 0.30 + 0.10 * fibres + 0.05 * tex
    cyto_e = 0.42 + 0.05 * tex
    membrane = np.exp(-0.5 * (depth / (0.9 * s)) ** 2)
    c_e = np.where(epithelium, cyto_e + 0.22 * border, stroma_e) + 0.35 * membrane
    c_h = 0.04 + 0.10 * border * epithelium + 0.12 * membrane
    chromatin = 1.0 + 0.18 * rng.standard_normal((size, size), dtype=np.float32)
    c_h = c_h + 1.05 * nuc * chromatin
    c_e = c_e + 0.15 * nuc + 1.5 * nucleolus - 0.25 * halo
    c_h = c_h * (1 - 0.55 * nucleolus) + 2.6 * mitosis
    od = c_h[..., None] * _H + c_e[..., None] * _E
    if stain is None:
        stain = 1.0 + 0.06 * rng.standard_normal(3)
    od = od * np.asarray(stain, dtype=np.float32)
    rgb = np.exp(-od)

    if not in_focus:
        rgb = _blur(rgb, BLUR_SIGMA * s)
        rgb = 0.85 * rgb + 0.15 * rgb.mean()
    rgb = rgb + 0.012 * rng.standard_normal(rgb.shape, dtype=np.float32)
    image = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)

    on_tile = (centres[:, 0] >= 0) & (centres[:, 0] < size) & (centres[:, 1] >= 0) & (centres[:, 1] < size)
    nuclei = {"centre": centres[on_tile], "major": major[on_tile], "minor": minor[on_tile],
              "angle": angles[on_tile], "in_lesion": in_lesion[on_tile], "nucleolus": has_nl[on_tile]}
    return Tile(image=image, masks={"lesion": lesion, "mitosis": mitosis_mask}, nuclei=nuclei,
                axis_angle=float(axis))
