"""Comparisons over seeds (mdnet_utils.evaluation.seeds): the per-epoch band of a reference's histories."""
import pandas as pd
import pytest

from mdnet_utils.evaluation.seeds import mean_and_sd, seed_curves


def _meta(losses):
    return {"history": [{"epoch": e + 1, "stage": "diagnosis", "train_loss": v} for e, v in enumerate(losses)]}


def test_a_curve_over_seeds_is_the_mean_min_and_max_of_each_epoch():
    curves = seed_curves({0: _meta([1.0, 0.5, 0.2]), 1: _meta([0.8, 0.7, 0.4]), 2: _meta([0.9, 0.3, 0.3])},
                         "train_loss")
    assert list(curves.index) == [1, 2, 3] and list(curves.columns) == ["mean", "min", "max", "seeds"]
    assert curves.loc[2, "mean"] == pytest.approx(0.5) and curves.loc[2, "min"] == 0.3 and curves.loc[2, "max"] == 0.7
    assert list(curves["seeds"]) == [3, 3, 3]


def test_a_seed_with_a_shorter_history_is_counted_only_where_it_has_the_epoch():
    curves = seed_curves({0: _meta([1.0, 0.5, 0.2]), 1: _meta([0.8])}, "train_loss")
    assert list(curves["seeds"]) == [2, 1, 1] and curves.loc[3, "mean"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no seeds given"):
        seed_curves({}, "train_loss")


def test_mean_and_sd_adds_the_two_rows_and_leaves_the_table_given_alone():
    table = pd.DataFrame({"accuracy": [0.9, 0.8]}, index=["seed 0", "seed 1"])
    out = mean_and_sd(table)
    assert list(out.index) == ["seed 0", "seed 1", "mean", "sd"] and len(table) == 2
    assert out.loc["sd", "accuracy"] == pytest.approx(0.1 / 2 ** 0.5)  # the sample sd, ddof 1
