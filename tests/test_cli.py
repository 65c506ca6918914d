"""The command line: `python -m mdnet_utils data ...` and `bench`; bad input exits 2 with one sentence."""
import json
import subprocess
import sys

from mdnet_utils.__main__ import _score_lines, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "mdnet_utils", *args], capture_output=True, text=True)


def test_data_builds_a_dataset_and_check_reads_it_back(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "--out", str(out), "--n-images", "24", "--size", "24", "--seed", "1"]) == 0
    assert (out / "annotation.json").is_file()
    assert "24 tiles" in capsys.readouterr().out
    assert main(["data", "--check", str(out)]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_numbers_give_one_sentence_and_status_2(tmp_path):
    r = run("data", "--out", str(tmp_path / "ds"), "--n-images", "3")
    assert r.returncode == 2
    assert r.stderr.startswith("error: --n-images 3 is out of range") and r.stderr.count("\n") == 1
    assert not (tmp_path / "ds").exists()


def test_a_broken_dataset_names_the_file_and_exits_2(tmp_path, capsys):
    out = tmp_path / "ds"
    main(["data", "--out", str(out), "--n-images", "24", "--size", "24"])
    capsys.readouterr()  # the build's progress bar is not part of the check's message
    ann = json.loads((out / "annotation.json").read_text())
    del ann["train"][0]["report"]
    (out / "annotation.json").write_text(json.dumps(ann))
    assert main(["data", "--check", str(out)]) == 2
    err = capsys.readouterr().err
    assert "annotation.json" in err and ann["train"][0]["id"] in err and err.count("\n") == 1


def test_check_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["data", "--check", str(tmp_path / "nowhere")]) == 2
    assert "annotation.json" in capsys.readouterr().err


def test_a_usage_error_is_one_line_with_status_2(capsys):
    assert main(["train", "--data", "d"]) == 2  # --out missing
    err = capsys.readouterr().err
    assert err.startswith("error: mdnet train: the following arguments are required: --out") and err.count("\n") == 1
    assert main(["bench", "nothing"]) == 2 and "invalid choice" in capsys.readouterr().err


def _failing_data_command(monkeypatch, error):
    import mdnet_utils.data as data

    def fail(*a, **k):
        raise error
    monkeypatch.setattr(data, "make_synthetic_dataset", fail)


def test_a_failure_while_running_exits_1_naming_what_failed(monkeypatch, tmp_path, capsys):
    import errno

    _failing_data_command(monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png")))
    assert main(["data", "--out", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: mdnet data failed writing {tmp_path / 'x.png'}: No space left on device.\n"
    _failing_data_command(monkeypatch, MemoryError())
    assert main(["data", "--out", str(tmp_path / "ds")]) == 1
    assert "ran out of memory" in capsys.readouterr().err
    _failing_data_command(monkeypatch, RuntimeError("something broke\ninside"))
    assert main(["data", "--out", str(tmp_path / "ds")]) == 1
    assert capsys.readouterr().err == ("error: mdnet data failed: RuntimeError: something broke inside "
                                       "(--debug shows the traceback).\n")


def test_debug_shows_the_traceback_instead(monkeypatch, tmp_path):
    import pytest

    _failing_data_command(monkeypatch, RuntimeError("something broke"))
    with pytest.raises(RuntimeError, match="something broke"):
        main(["data", "--out", str(tmp_path / "ds"), "--debug"])


def test_an_interruption_exits_130_in_one_line(monkeypatch, tmp_path, capsys):
    _failing_data_command(monkeypatch, KeyboardInterrupt())
    assert main(["data", "--out", str(tmp_path / "ds")]) == 130
    assert capsys.readouterr().err == "error: mdnet data interrupted.\n"


def test_quiet_and_verbose_set_the_log_level_for_the_command_only(tmp_path, capsys, monkeypatch):
    import logging

    import mdnet_utils.data as data

    seen = []
    real = data.make_synthetic_dataset
    monkeypatch.setattr(data, "make_synthetic_dataset",
                        lambda *a, **k: seen.append(logging.getLogger("mdnet_utils").level) or real(*a, **k))
    before = logging.getLogger("mdnet_utils").level
    assert main(["data", "--out", str(tmp_path / "ds"), "--n-images", "24", "--size", "24", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["-v", "data", "--out", str(tmp_path / "ds"), "--n-images", "24", "--size", "24"]) == 0
    assert seen == [logging.WARNING, logging.DEBUG]
    assert logging.getLogger("mdnet_utils").level == before  # a later command (or test) starts afresh


def test_evaluates_table_names_every_group_of_numbers_by_its_path_however_deep():
    scores = {"diagnosis": 0.95, "report": {"BLEU-4": 0.6, "CIDEr": 2.1},
              "findings": {"lesion": {"keyword": {"lift": 1.25, "sentences": 3}}},
              "attention sink": {"cell": 3, "sink": True}}
    assert _score_lines(scores) == [
        f"{'diagnosis':32s} 0.9500",
        f"{'report':32s} BLEU-4 0.6  CIDEr 2.1",
        f"{'findings / lesion / keyword':32s} lift 1.25  sentences 3",
        f"{'attention sink':32s} cell 3  sink 1"]
