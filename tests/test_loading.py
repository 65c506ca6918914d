"""From files to batches: held in memory or streamed from disk, the engine reads the same batches."""
import json
import shutil

import pytest
import torch
from PIL import Image

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import ReportDataset, training_vocab
from mdnet_utils.data.loading import FileCases, batches, flat_reports, load_report_tiles, load_tiles, to_input
from mdnet_utils.errors import DatasetError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("loading") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)
    return root, training_vocab(root)


def streamed(root, vocab, **kw):
    return FileCases(ReportDataset(root, "train", vocab=vocab), vocab, **kw)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streaming_and_in_memory_sources_yield_the_same_batches(data, num_workers):
    root, vocab = data
    memory = load_report_tiles(root, "train", vocab, max_len=30).cases()
    files = streamed(root, vocab, max_len=30)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(1))
    pairs = list(zip(batches(memory, order, 5), batches(files, order, 5, num_workers=num_workers)))
    assert len(pairs) == 5  # 24 cases in batches of 5: the last one short
    for a, b in pairs:
        assert a.images.dtype == b.images.dtype == torch.uint8 and torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(flat_reports(a.tokens), flat_reports(b.tokens))  # padding differs, reports do not


def test_making_and_reading_a_loader_leaves_the_global_rng_alone(data):
    """Dropout draws from the global RNG: the data path must not, or a resumed run would drift."""
    root, vocab = data
    torch.manual_seed(7)
    state = torch.get_rng_state()
    for _ in batches(streamed(root, vocab), torch.arange(24), 8, num_workers=1):
        pass
    assert torch.equal(state, torch.get_rng_state())


def test_images_of_different_sizes_are_resized_to_the_image_size(data, tmp_path):
    root, vocab = data
    mixed = tmp_path / "mixed"
    shutil.copytree(root, mixed)
    first = json.loads((mixed / "annotation.json").read_text())["train"][0]["image_path"][0]
    Image.open(mixed / "images" / first).resize((48, 40)).save(mixed / "images" / first)
    with pytest.raises(DatasetError, match="differ in size"):
        next(iter(batches(streamed(mixed, vocab), torch.arange(24), 8)))
    batch = next(iter(batches(streamed(mixed, vocab, image_size=16), torch.arange(24), 8)))
    assert tuple(batch.images.shape) == (8, 3, 16, 16)
    tiles = load_report_tiles(mixed, "train", vocab, image_size=24)
    assert tuple(tiles.images.shape[1:]) == (3, 24, 24)
    assert tuple(tiles.masks["lesion"].shape[1:]) == (1, 32, 32)  # masks keep their own size


def test_reports_are_cut_to_max_len_and_every_case_brings_the_same_number(data):
    root, vocab = data
    files = streamed(root, vocab, max_len=8)
    assert files.reports == 5 and all(len(s) == 8 and s[-1] == vocab.eos_id for s in files.tokens(0))
    assert not streamed(root, vocab, reports=False)[0][2]


def test_a_subset_is_the_first_cases_and_the_tiles_of_an_image_model_are_the_stored_bytes(data):
    root, vocab = data
    files = streamed(root, vocab)
    assert len(files.subset(10)) == 10 and files.subset(None) is files
    images, labels, grades = load_tiles(root, "train")
    assert torch.equal(images[3], files.image(3)) and labels.tolist() == [e["label"] for e in files.entries]
    assert grades.shape == (24, 5) and to_input(images[:2], "cpu").max() <= 1.0
