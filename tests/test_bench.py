"""`bench train`: the reference decoder computes what the package's does, and the result has its documented keys."""
import pytest

from mdnet_utils import bench
from mdnet_utils.__main__ import build_parser


def test_the_reference_decoder_gives_the_package_decoders_loss():
    package, reference = bench.check_decoder_reference(batch=4, steps=6)
    assert package == pytest.approx(reference, abs=1e-5)


def test_the_check_notices_a_reference_on_other_weights():
    pair = bench._decoder_pair(4, 6)
    pair[1]["reference"]["W_att"].weight.data[0, 0] += 0.1  # one weight off
    with pytest.raises(RuntimeError, match="disagrees"):
        bench.check_decoder_reference(pair=pair)


def test_synthetic_reports_are_framed_and_padded():
    import torch

    tokens = bench._synthetic_reports(16, 12, 30, torch.Generator().manual_seed(0))
    assert (tokens[:, 0] == 1).all() and (tokens == 2).sum(1).eq(1).all() and tokens[0, -1] == 2
    lengths = (tokens != 0).sum(1)
    assert (tokens.gather(1, (lengths - 1).unsqueeze(1)) == 2).all() and (lengths >= 6).all()


def test_bench_train_reports_throughput_and_the_decoder_ratio():
    assert build_parser().parse_args(["bench", "train"]).name == "train"
    out = bench.BENCHMARKS["train"](batch_size=2, reports=2, length=8, image_size=32, steps=1, warmup=1, rounds=1)
    assert out["benchmark"] == "train" and {"cpu_count", "torch"} <= set(out["machine"])
    assert {"step_s", "images_per_s", "cases_per_step", "reports_per_case"} <= set(out["end_to_end"])
    dec = out["decoder"]
    assert {"package_step_s", "reference_step_s", "ratio_package_over_reference", "rows"} <= set(dec)
    assert dec["rows"] == 4 and dec["loss_package"] == pytest.approx(dec["loss_reference"], abs=1e-5)
    assert dec["ratio_package_over_reference"] > 0
