"""Command line: ``python -m mdnet_utils <command>`` (also installed as ``mdnet``).

    data   build the synthetic dataset:  data --out DIR [--n-images N] [--size S] [--seed K]
           check a dataset (any source):  data --check DIR
           convert the authors' BCIDR/NMI layout:  data --from-bcidr DIR --out DIR
    bench  run a benchmark, print JSON:  bench data | bench resnet | bench train
    notebooks run [PATH ...]             execute notebooks in place, full mode (make run)
    train  train MDNet (or the baseline) on a dataset in the annotation.json layout:
           train --data DIR --out RUN [--model mdnet|resnet-sat] [--epochs E] [--batch-size B]
                 [--image-size S] [--seed K] [--resume] [--bf16]   (also under torchrun)
    evaluate  every Part III score the data supports:  evaluate --run RUN --data DIR [--split test]
    report  diagnose and report on image files, a diagnosis card each (DIR/<stem>.png, DIR/reports.json):
           report --run RUN IMAGE [IMAGE ...] --out DIR [--beam K]
    site    the course as static HTML (index.html + every notebook, MathJax bundled):  site [--out DIR]
    student the student edition (solutions replaced by stubs, outputs cleared):        student [--out DIR]
    plot    learning curves (curves.png, scores.png) and evaluate's scores (scores-SPLIT.png) as PNG:
           plot RUN [--out DIR]   (default DIR: RUN)

Bad input ends with one sentence on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _cmd_data(args: argparse.Namespace) -> None:
    from mdnet_utils.data import ReportDataset, make_synthetic_dataset
    from mdnet_utils.data.dataset import read_annotation

    if args.from_bcidr:  # the MDNet authors' layout -> annotation.json
        from mdnet_utils.data.adapters import convert_bcidr_folder

        if not args.out:
            raise ValueError("data --from-bcidr needs --out DIR (the converted data set).")
        root = convert_bcidr_folder(args.from_bcidr, args.out, seed=args.seed)
        counts = {k: len(v) for k, v in read_annotation(root).items()}
        print(f"{root}: converted ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return
    if args.check:  # read every item of every split: the loader's errors name what is wrong
        counts = {}
        for split in read_annotation(args.check):
            ds = ReportDataset(args.check, split)
            for i in range(len(ds)):
                ds[i]
            counts[split] = len(ds)
        print(f"{args.check}: ok ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return
    if not args.out:
        raise ValueError("data needs --out DIR (to build) or --check DIR (to verify).")
    start = time.perf_counter()
    root = make_synthetic_dataset(args.out, n_images=args.n_images, image_size=args.size, seed=args.seed,
                                  progress=True)
    counts = {k: len(v) for k, v in read_annotation(root).items()}
    print(f"{root}: {sum(counts.values())} tiles ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
          f"in {time.perf_counter() - start:.1f} s")


def _cmd_bench(args: argparse.Namespace) -> None:
    from mdnet_utils import bench

    print(json.dumps(bench.BENCHMARKS[args.name](), indent=2))


def _cmd_notebooks(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mdnet_utils.notebooks import run_notebooks

    run_notebooks([Path(p) for p in args.paths] or None)


def _cmd_train(args: argparse.Namespace) -> None:
    from mdnet_utils.runs import train_run

    history = train_run(args.data, args.out, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                        image_size=args.image_size, seed=args.seed, resume=args.resume, min_count=args.min_count,
                        max_len=args.max_len, bf16=args.bf16)
    if history and int(os.environ.get("RANK", "0")) == 0:
        print(f"{args.out}: {len(history)} epochs; metrics in metrics.jsonl, best model in best.pt")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mdnet_utils.runs import evaluate_run, write_json

    scores = evaluate_run(args.run, args.data, split=args.split, meteor=None if args.meteor else False)
    out = Path(args.run) / f"scores-{args.split}.json"
    write_json(out, scores)
    for group, values in scores.items():
        if not isinstance(values, dict):
            print(f"{group:32s} {values:.4f}")
            continue
        for name, value in values.items():
            if isinstance(value, dict):
                print(f"{group + ' / ' + name:32s} " + "  ".join(f"{k} {v:.4g}" for k, v in value.items()))
            else:
                print(f"{group + ' / ' + name:32s} {value:.4f}")
    print(f"written to {out}")


def _cmd_report(args: argparse.Namespace) -> None:
    from mdnet_utils.reporting import report_images

    for r in report_images(args.run, args.images, args.out, beam_size=args.beam):
        confidence = "" if r["confidence"] is None else f" ({r['confidence']:.0%})"
        print(f"{r['image']}: {r['diagnosis']}{confidence}: {r['report']}  [{os.path.join(args.out, r['png'])}]")


def _cmd_plot(args: argparse.Namespace) -> None:
    from mdnet_utils.reporting import plot_run

    for path in plot_run(args.run, args.out):
        print(f"written {path}")


def _cmd_site(args: argparse.Namespace) -> None:
    from mdnet_utils.site import build_site

    start = time.perf_counter()
    out = build_site(args.out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(list(out.glob('*.html')))} pages, {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s; "
          f"open {out / 'index.html'}")


def _cmd_student(args: argparse.Namespace) -> None:
    from mdnet_utils.exercises import CHECKS
    from mdnet_utils.student import build_student_edition

    out = build_student_edition(args.out)
    stubs = sum(len(CHECKS[p.name[:2]]) for p in out.glob("*.ipynb"))  # tests hold CHECKS to the notebooks
    print(f"{out}: {len(list(out.glob('*.ipynb')))} notebooks, {stubs} exercises to solve "
          "(their checks are in mdnet_utils.exercises)")


def build_parser() -> argparse.ArgumentParser:
    from mdnet_utils import config

    parser = argparse.ArgumentParser(prog="mdnet", description="MDNet, step by step: course tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="build the synthetic BCIDR-like dataset")
    p.add_argument("--out", help="folder to write (replaced if stale)")
    p.add_argument("--check", metavar="DIR", help="read every entry of an existing dataset and report problems")
    p.add_argument("--from-bcidr", metavar="DIR",
                   help="convert a BCIDR/NMI folder ({name: {caption, label}} JSON + images) into --out")
    p.add_argument("--n-images", type=int, default=config.n_images, help="number of tiles (default %(default)s)")
    p.add_argument("--size", type=int, default=64, help="tile size in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("bench", help="run a benchmark and print its figures as JSON")
    from mdnet_utils import bench  # no torch at import time: bench imports it inside each benchmark

    p.add_argument("name", choices=list(bench.BENCHMARKS), help="which benchmark")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("notebooks", help="course upkeep: execute the notebooks in place (full mode)")
    p.add_argument("action", choices=["run"])
    p.add_argument("paths", nargs="*", help="notebooks to run (default: all of notebooks/)")
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("train", help="train MDNet or the baseline on a dataset in the annotation.json layout")
    p.add_argument("--data", required=True, help="dataset folder (annotation.json, images/)")
    p.add_argument("--out", required=True, help="run folder to write (must be new or empty, unless --resume)")
    p.add_argument("--model", default="mdnet", help="mdnet or resnet-sat (default %(default)s)")
    p.add_argument("--epochs", type=int, default=10, help="epochs over the three stages (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="global batch of cases (default %(default)s)")
    p.add_argument("--image-size", type=int, default=64, help="images are resized to this (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--min-count", type=int, default=3, help="vocabulary: words seen this often (default %(default)s)")
    p.add_argument("--max-len", type=int, default=60, help="reports are cut to this many tokens (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the forward pass")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a run's best model on a split; writes RUN/scores-SPLIT.json")
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", help="split to score (default %(default)s)")
    p.add_argument("--meteor", action="store_true", help="also METEOR (needs Java; about 15 s)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="diagnose and report on image files with a run's best model")
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    p.add_argument("--out", required=True, help="folder for the cards (<stem>.png) and reports.json")
    p.add_argument("--beam", type=int, default=1, help="beam size (default %(default)s: greedy)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("plot", help="a run's learning curves and evaluate's scores as PNG")
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--out", help="folder for the PNG files (default: the run folder)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("site", help="render the course as a static HTML site (offline: MathJax bundled)")
    p.add_argument("--out", default="build/site", help="folder to write, replaced (default %(default)s)")
    p.set_defaults(func=_cmd_site)

    p = sub.add_parser("student", help="write the student edition: solutions replaced by stubs, outputs cleared")
    p.add_argument("--out", default="student", help="folder to write, replaced (default %(default)s)")
    p.set_defaults(func=_cmd_student)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as e:  # DatasetError is a ValueError: its message is the sentence
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
