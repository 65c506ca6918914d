"""Command line: ``python -m mdnet_utils <command>`` (also installed as ``mdnet``).

    data   build the synthetic dataset:  data --out DIR [--n-images N] [--size S] [--seed K]
           check a dataset (any source):  data --check DIR
    bench  run a benchmark, print JSON:  bench data | bench resnet
    notebooks run [PATH ...]             execute notebooks in place, full mode (make run)

Bad input ends with one sentence on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _cmd_data(args: argparse.Namespace) -> None:
    from mdnet_utils.data import ReportDataset, make_synthetic_dataset
    from mdnet_utils.data.dataset import read_annotation

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


def build_parser() -> argparse.ArgumentParser:
    from mdnet_utils import config

    parser = argparse.ArgumentParser(prog="mdnet", description="MDNet, step by step: course tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="build the synthetic BCIDR-like dataset")
    p.add_argument("--out", help="folder to write (replaced if stale)")
    p.add_argument("--check", metavar="DIR", help="read every entry of an existing dataset and report problems")
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
