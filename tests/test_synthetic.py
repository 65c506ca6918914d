"""The tile renderer and the dataset build: what each grade draws, and how the build behaves."""
import json

import numpy as np
import pytest

from mdnet_utils.errors import DatasetError

from mdnet_utils.data import make_synthetic_dataset, read_annotation
from mdnet_utils.data.build import MANIFEST, content_hash, is_complete
from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES, abnormality_score, conclusion, has_findings, sample_case
from mdnet_utils.data.synthetic import LESION_SHARE, render_tile

NORMAL = {f: GRADES[f][0] for f in FEATURES}


def tiles(feature, grade, n=12, seed=0, base=None, **kw):
    grades = dict(base or NORMAL, **{feature: grade})
    rng = np.random.default_rng(seed)
    return [render_tile(grades, rng=rng, **kw) for _ in range(n)]


def mean(values):
    return float(np.mean(values))


def coherence(angles):
    """How aligned axes are: |mean of exp(2i angle)|, 1 = all parallel, about 0 = random."""
    return abs(np.mean(np.exp(2j * angles))) if len(angles) else 0.0


def lesion_density(tile):
    return tile.nuclei["in_lesion"].sum() / max(tile.masks["lesion"].sum(), 1)


def test_a_tile_is_an_rgb_uint8_image_with_boolean_masks():
    t = render_tile(NORMAL, rng=np.random.default_rng(0), size=48)
    assert t.image.shape == (48, 48, 3) and t.image.dtype == np.uint8
    assert set(t.masks) == {"lesion", "mitosis"}
    assert all(m.shape == (48, 48) and m.dtype == bool for m in t.masks.values())


def test_the_same_generator_state_draws_the_same_tile():
    a = render_tile(NORMAL, rng=np.random.default_rng(7)).image
    b = render_tile(NORMAL, rng=np.random.default_rng(7)).image
    c = render_tile(NORMAL, rng=np.random.default_rng(8)).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_crowding_packs_more_nuclei_into_the_lesion_and_darkens_it():
    base = dict(NORMAL, pleomorphism="moderate")  # a lesion exists at every crowding grade
    density = [mean([lesion_density(t) for t in tiles("crowding", g, base=base)]) for g in GRADES["crowding"]]
    assert density[0] < density[1] < density[2]
    red = [mean([t.image[..., 0][t.masks["lesion"]].mean() for t in tiles("crowding", g, base=base)])
           for g in GRADES["crowding"]]
    assert red[0] > red[1] > red[2]  # more hematoxylin, less red light


def test_pleomorphism_spreads_nucleus_size():
    def size_spread(t):
        area = t.nuclei["major"] * t.nuclei["minor"]
        return np.std(np.log(area[t.nuclei["in_lesion"]]))
    spread = [mean([size_spread(t) for t in tiles("pleomorphism", g)]) for g in GRADES["pleomorphism"][1:]]
    base = [mean([size_spread(t) for t in tiles("pleomorphism", "mild", base=dict(NORMAL, mitosis="infrequent"))])]
    assert base[0] < spread[0] < spread[1]


def test_polarity_lowers_the_coherence_of_nucleus_orientation():
    base = dict(NORMAL, crowding="moderate")
    coh = [mean([coherence(t.nuclei["angle"][t.nuclei["in_lesion"]]) for t in tiles("polarity", g, base=base)])
           for g in GRADES["polarity"]]
    assert coh[0] > 0.9 and coh[0] > coh[1] > coh[2] and coh[2] < 0.35


def test_preserved_polarity_aligns_nuclei_with_the_tissue_axis():
    t = render_tile(NORMAL, rng=np.random.default_rng(3))
    offset = np.angle(np.mean(np.exp(2j * (t.nuclei["angle"] - t.axis_angle)))) / 2
    assert abs(offset) < np.deg2rad(5)


def test_mitosis_adds_dark_figures_and_their_mask():
    area = [mean([t.masks["mitosis"].sum() for t in tiles("mitosis", g)]) for g in GRADES["mitosis"]]
    assert area[0] == 0 < area[1] < area[2]
    darkest = [mean([t.image.sum(-1).min() for t in tiles("mitosis", g)]) for g in GRADES["mitosis"]]
    assert darkest[0] > darkest[2]


def test_prominent_nucleoli_put_eosinophilic_dots_in_nuclei():
    def magenta(t):  # nucleoli: red stays high where blue-purple nucleus would absorb it
        img = t.image.astype(int)
        return ((img[..., 0] - img[..., 1]) > 110).mean()
    base = dict(NORMAL, crowding="moderate")  # a lesion exists at both grades
    share = [mean([t.nuclei["nucleolus"][t.nuclei["in_lesion"]].mean() for t in tiles("nucleoli", g, base=base)])
             for g in GRADES["nucleoli"]]
    assert share[0] == 0 and share[1] > 0.6  # of the lesion's nuclei (outside it the epithelium is normal)
    assert not any(t.nuclei["nucleolus"][~t.nuclei["in_lesion"]].any() for t in tiles("nucleoli", "prominent"))
    assert mean([magenta(t) for t in tiles("nucleoli", "prominent")]) > \
        mean([magenta(t) for t in tiles("nucleoli", "inconspicuous", base=dict(NORMAL, crowding="moderate"))])


def test_an_out_of_focus_tile_loses_fine_detail():
    def sharpness(t):
        g = t.image.astype(float).mean(-1)
        return np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()
    sharp = mean([sharpness(t) for t in tiles("nucleoli", "prominent")])
    blurred = mean([sharpness(t) for t in tiles("nucleoli", "prominent", in_focus=False)])
    assert blurred < 0.6 * sharp


def test_masks_are_non_empty_exactly_where_findings_exist():
    rng = np.random.default_rng(5)
    for _ in range(60):
        grades, in_focus = sample_case(rng)
        t = render_tile(grades, in_focus=in_focus, rng=rng)
        assert t.masks["lesion"].any() == has_findings(grades)
        assert t.masks["mitosis"].any() == (grades["mitosis"] != "rare")
        assert not (t.masks["mitosis"] & ~t.masks["lesion"]).any()  # findings lie in the lesion


def test_a_lesion_covers_the_drawn_share_of_the_tile_so_that_a_map_can_find_it():
    # a map confined to the lesion has a lift of 1 / share over a uniform one: a small share is a sharp target
    rng = np.random.default_rng(9)
    shares = []
    for _ in range(80):
        grades, _ = sample_case(rng)
        t = render_tile(grades, rng=rng)
        if has_findings(grades):
            shares.append(t.masks["lesion"].mean())
    low, high = LESION_SHARE
    assert 0.10 <= low and high <= 0.40 and len(shares) > 40
    assert low - 0.005 <= min(shares) and max(shares) <= high + 0.02  # + mitotic figures at the lesion's edge
    assert 0.20 <= mean(shares) <= 0.35


def test_the_conclusion_rule_and_that_no_single_feature_gives_it_away():
    assert conclusion(NORMAL) == "normal"
    assert conclusion(dict(NORMAL, nucleoli="prominent")) == "low grade"
    assert conclusion({f: GRADES[f][-1] for f in FEATURES}) == "high grade"
    assert conclusion(NORMAL, in_focus=False) == "insufficient information"
    rng = np.random.default_rng(0)
    cases = [sample_case(rng) for _ in range(3000)]
    labels = [conclusion(g, f) for g, f in cases]
    counts = {c: labels.count(c) for c in CLASSES}
    assert all(counts[c] > 0.05 * len(cases) for c in CLASSES)
    for f in FEATURES:  # best guess of the conclusion from one feature's grade alone
        best = sum(max(sum(1 for (g, _), y in zip(cases, labels) if g[f] == grade and y == c) for c in CLASSES)
                   for grade in GRADES[f])
        assert best / len(cases) < 0.75, f
    assert all(0 <= abnormality_score(g) <= 9 for g, _ in cases)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    return make_synthetic_dataset(root, n_images=60, image_size=32, seed=3, workers=1)


def test_the_build_writes_the_r2gen_layout_with_five_reports(built):
    ann = read_annotation(built)
    assert set(ann) == {"train", "val", "test"} and sum(map(len, ann.values())) == 60
    e = ann["train"][0]
    assert {"id", "report", "image_path", "split", "reports", "label", "grades", "mask_path", "patient"} <= set(e)
    assert len(e["reports"]) == 5 and e["report"] == e["reports"][0] and e["split"] == "train"
    assert (built / "images" / e["image_path"][0]).is_file()
    assert all((built / "masks" / p).is_file() for p in e["mask_path"].values())
    assert (built / "vocab.json").is_file() and (built / MANIFEST).is_file()


def test_no_patient_is_in_two_splits(built):
    ann = read_annotation(built)
    patients = {s: {e["patient"] for e in entries} for s, entries in ann.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert not (patients["val"] & patients["test"])
    assert all(patients.values())


def test_same_seed_same_bytes_whatever_the_worker_count_another_seed_differs(built, tmp_path):
    again = make_synthetic_dataset(tmp_path / "again", n_images=60, image_size=32, seed=3, workers=2)
    other = make_synthetic_dataset(tmp_path / "other", n_images=60, image_size=32, seed=4, workers=1)
    assert content_hash(again) == content_hash(built)
    assert content_hash(other) != content_hash(built)


def test_a_complete_cache_is_reused_and_an_edited_one_rebuilt(tmp_path):
    root = make_synthetic_dataset(tmp_path / "ds", n_images=24, image_size=24, workers=1)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert make_synthetic_dataset(root, n_images=24, image_size=24) == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # reused, not rebuilt
    good = content_hash(root)
    image = next((root / "images").iterdir())
    image.write_bytes(b"edited")
    assert not is_complete(root, n_images=24, image_size=24)
    make_synthetic_dataset(root, n_images=24, image_size=24, workers=1)
    assert content_hash(root) == good


def test_a_build_of_ours_with_other_parameters_is_rebuilt_but_a_folder_without_our_manifest_is_left_alone(tmp_path):
    root = make_synthetic_dataset(tmp_path / "ds", n_images=24, image_size=24, workers=1)
    assert not is_complete(root, n_images=30, image_size=24)
    make_synthetic_dataset(root, n_images=30, image_size=24, workers=1)   # stale, but ours: replaced
    assert json.loads((root / MANIFEST).read_text())["params"]["n_images"] == 30
    assert not list(tmp_path.glob(".ds.*"))
    (root / MANIFEST).unlink()  # no manifest: nothing says the folder is ours any more
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(DatasetError, match="not a data set this command built"):
        make_synthetic_dataset(root, n_images=24, image_size=24, workers=1)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(DatasetError, match="left alone"):
        make_synthetic_dataset(mine, n_images=24, image_size=24, workers=1)
    assert (mine / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    assert (make_synthetic_dataset(tmp_path / "empty", n_images=24, image_size=24, workers=1) / MANIFEST).exists()


@pytest.mark.parametrize("kwargs", [{"n_images": 5}, {"n_images": 30, "image_size": 8}, {"n_images": "30"}])
def test_bad_build_arguments_are_refused_before_anything_is_written(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "ds", **kwargs)
    assert not list(tmp_path.iterdir())
