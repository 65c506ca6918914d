"""The command line: `python -m mdnet_utils data ...` and `bench`; bad input exits 2 with one sentence."""
import json
import subprocess
import sys

from mdnet_utils.__main__ import main


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
    assert r.stderr.startswith("error: n_images=3") and r.stderr.count("\n") == 1
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
