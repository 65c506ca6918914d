"""Command line: ``python -m mdnet_utils <command>`` (also installed as ``mdnet``).

    data      build the synthetic dataset:  data --out DIR [--n-images N] [--size S] [--seed K]
              check a dataset (any source):  data --check DIR
              convert the authors' BCIDR/NMI layout:  data --from-bcidr DIR --out DIR
    train     train MDNet (or the baseline) on a dataset in the annotation.json layout, the course's recipe:
              train --data DIR --out RUN [--config FILE] [--model mdnet|resnet-sat] [--epochs E] [--batch-size B]
                    [--lr LR] [--weight-decay WD] [--image-size S] [--seed K] [--min-count N] [--max-len T]
                    [--bf16] [--resume] [--device DEV] [--num-workers W]          (also under torchrun)
    evaluate  every Part III score the data supports:  evaluate --run RUN --data DIR [--split test]
    report    diagnose and report on image files, a diagnosis card each (DIR/<stem>.png, DIR/reports.json):
              report --run RUN IMAGE [IMAGE ...] --out DIR [--beam K]
    plot      learning curves (curves.png, scores.png) and evaluate's scores (scores-SPLIT.png) as PNG:
              plot RUN [--out DIR]   (default DIR: RUN)
    bench     run a benchmark, print JSON:  bench data | resnet | train | data-path
    notebooks run [PATH ...] [--fast]   execute notebooks in place, full mode (make run); --fast: in fast mode,
              nothing written back (make runtimes); both record each one's time in notebooks/runtimes.json
    reference train the reference models (resumable, skips those up to date), list or check them:
              reference [NAME ...] [--seeds K] [--list] [--check] [--out DIR]
    site      the course as static HTML (index.html + every notebook, MathJax bundled):  site [--out DIR]
    student   the student edition (solutions replaced by stubs, outputs cleared):        student [--out DIR]
    zh        the Chinese edition, its student edition, its translations:  zh [build|student|sync|check] [NN ...]

Every command takes -v (debug messages), -q (warnings only, no progress bars) and --debug (a traceback
instead of the one-line error). ``train --config FILE`` reads a JSON or YAML file {"model": {...},
"training": {...}} (a run's config.json is one); flags given on the command line override it.

Exit status: 0 done; 2 bad input or usage, with one line on stderr naming the file or the value; 1 a failure
while running (disk full, out of memory, ...), with one line naming what failed; 130 interrupted.

The commands import their modules when they run, not at the top of this file: importing torch and
torchvision costs 3.6 s and 800 MB here (measured, torch 2.14.1), which ``--help``, ``student`` and ``site``
never need.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from mdnet_utils.cli_errors import flags, runtime_failure, translate
from mdnet_utils.errors import ConfigError, Interrupted  # cheap: errors imports nothing

log = logging.getLogger("mdnet_utils")

class UsageError(Exception):
    """A command line that argparse refuses: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the usage too: one line is the contract
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _cmd_data(args: argparse.Namespace) -> None:
    from mdnet_utils.data import ReportDataset, make_synthetic_dataset, read_annotation
    from mdnet_utils.data.adapters import convert_bcidr_folder
    from mdnet_utils.data.dataset import same_views, training_vocab

    if args.from_bcidr:  # the MDNet authors' layout -> annotation.json
        if not args.out:
            raise UsageError("data --from-bcidr needs --out DIR (the converted data set).")
        root = convert_bcidr_folder(args.from_bcidr, args.out, seed=args.seed)
        counts = {k: len(v) for k, v in read_annotation(root).items()}
        print(f"{root}: converted ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return
    if args.check:  # read every file of every split as train reads it; writes nothing (not even vocab.json)
        vocab = training_vocab(args.check)
        splits = [ReportDataset(args.check, split, vocab=vocab) for split in read_annotation(args.check)]
        same_views(*splits)
        for ds in splits:
            for k in range(len(ds.entries)):
                ds.read_views(k)
                ds.read_masks(k)
        counts = {ds.split: len(ds) for ds in splits}
        print(f"{args.check}: ok ({', '.join(f'{k} {v}' for k, v in counts.items())})")
        return
    if not args.out:
        raise UsageError("data needs --out DIR (to build) or --check DIR (to verify).")
    start = time.perf_counter()
    try:
        root = make_synthetic_dataset(args.out, n_images=args.n_images, image_size=args.size, seed=args.seed,
                                      progress=not args.quiet)
    except ConfigError as err:  # the library's image_size is this command's --size
        raise ConfigError("size" if err.key == "image_size" else err.key, err.value, err.reason) from None
    counts = {k: len(v) for k, v in read_annotation(root).items()}
    print(f"{root}: {sum(counts.values())} tiles ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
          f"in {time.perf_counter() - start:.1f} s")


def _cmd_bench(args: argparse.Namespace) -> None:
    from mdnet_utils import bench

    print(json.dumps(bench.BENCHMARKS[args.name](), indent=2))


def _cmd_notebooks(args: argparse.Namespace) -> None:
    from mdnet_utils.course import run_notebooks

    run_notebooks([Path(p) for p in args.paths] or None, fast=args.fast)


def _device(name: str | None):
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", name, "is not a device name (cpu, cuda, cuda:1, mps).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "is not available here (no CUDA GPU).")
    return device


def _cmd_train(args: argparse.Namespace) -> None:
    from mdnet_utils.training.config import read_config_file
    from mdnet_utils.training.distributed import Distributed
    from mdnet_utils.training.runs import train_run

    dist = Distributed.from_env()
    if not dist.is_main:  # the main process speaks for the run
        log.setLevel(logging.WARNING)
    config = read_config_file(args.config) if args.config else None
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "seed", "image_size",
                                               "min_count", "max_len")}
    history = train_run(args.data, args.out, model=args.model, config=config, resume=args.resume,
                        device=_device(args.device), num_workers=args.num_workers, dist=dist,
                        progress=not args.quiet and dist.is_main, bf16=True if args.bf16 else None, **overrides)
    if history and dist.is_main:
        log.info("%s: %d epochs; metrics in metrics.jsonl, best model in best.pt", args.out, len(history))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from mdnet_utils.io import write_json
    from mdnet_utils.training.runs import evaluate_run

    scores = evaluate_run(args.run, args.data, split=args.split, meteor=None if args.meteor else False)
    out = Path(args.run) / f"scores-{args.split}.json"
    write_json(out, scores)
    for line in _score_lines(scores):
        print(line)
    log.info("written to %s", out)


def _score_lines(scores: dict, prefix: str = "") -> list[str]:
    """``evaluate``'s table: one line per group of numbers, named by its path ("findings / lesion / keyword")."""
    lines, flat = [], {}
    for name, value in scores.items():
        if isinstance(value, dict):
            lines += _score_lines(value, f"{prefix}{name} / ")
        else:
            flat[name] = value
    if flat and prefix:  # a group of numbers: one line
        lines.insert(0, f"{prefix[:-3]:32s} " + "  ".join(f"{k} {float(v):.4g}" for k, v in flat.items()))
    elif flat:  # numbers at the top level: one line each
        lines[:0] = [f"{k:32s} {float(v):.4f}" for k, v in flat.items()]
    return lines


def _cmd_report(args: argparse.Namespace) -> None:
    from mdnet_utils.reporting import report_images

    for r in report_images(args.run, args.images, args.out, beam_size=args.beam):
        confidence = "" if r["confidence"] is None else f" ({r['confidence']:.0%})"
        print(f"{r['image']}: {r['diagnosis']}{confidence}: {r['report']}  [{os.path.join(args.out, r['png'])}]")


def _cmd_plot(args: argparse.Namespace) -> None:
    from mdnet_utils.reporting import plot_run

    for path in plot_run(args.run, args.out):
        print(f"written {path}")


def _cmd_reference(args: argparse.Namespace) -> None:
    from mdnet_utils import config
    from mdnet_utils.reference import REGISTRY, check_references, course_data, metas, shipped, train_reference

    out = Path(args.out) if args.out else config.checkpoints_dir
    if args.seeds < 1:
        raise UsageError(f"reference: --seeds {args.seeds} is out of range: at least 1.")
    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        raise UsageError(f"reference: {unknown[0]!r} is not a reference model (see reference --list).")
    if args.list:
        have = shipped(out)
        for name, ref in REGISTRY.items():
            found = metas(name, out=out) if any(n == name for n, _ in have) else {}
            times = ", ".join(f"{m['seconds']:.0f}" for m in found.values())
            print(f"{name:24s} {ref.model.name:22s} epochs {ref.recipe.epochs:3d}  seeds {list(ref.seeds)}  "
                  f"start {ref.start_from or '-':12s} shipped {sorted(found) or 'none'}"
                  + (f"  trained in {times} s" if found else ""))
        files = [p for p in out.rglob("seed-*") if p.is_file() and ".work" not in p.parts] if out.is_dir() else []
        print(f"{out}: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB (at most 40 MB)")
        return
    root = course_data(progress=not args.quiet)
    if args.check:
        checked, problems = check_references(root=root, out=out)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise ValueError(problems[0] + more)
        print(f"{out}: {checked} shipped reference files checked: all load, are fresh and reproduce their figures"
              if checked else f"{out}: no reference model shipped yet (train them with: make references)")
        return
    for name in args.names or list(REGISTRY):
        for seed in REGISTRY[name].seeds[:args.seeds]:
            meta = train_reference(name, seed, root=root, out=out, progress=not args.quiet)
            test = ", ".join(f"{k} {v:.4f}" for k, v in meta["test"].items())
            print(f"{name} seed {seed}: test {test} ({meta['seconds']:.0f} s of training)")


def _cmd_site(args: argparse.Namespace) -> None:
    from mdnet_utils.course import build_site

    start = time.perf_counter()
    out = build_site(args.out, force=args.force)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(list(out.glob('*.html')))} pages, {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s; "
          f"open {out / 'index.html'}")


def _cmd_student(args: argparse.Namespace) -> None:
    from mdnet_utils.course import build_student_edition
    from mdnet_utils.exercises import CHECKS

    out = build_student_edition(args.out, force=args.force)
    stubs = sum(len(CHECKS[p.name[:2]]) for p in out.glob("*.ipynb"))  # tests hold CHECKS to the notebooks
    print(f"{out}: {len(list(out.glob('*.ipynb')))} notebooks, {stubs} exercises to solve "
          "(their checks are in mdnet_utils.exercises)")


def _cmd_zh(args: argparse.Namespace) -> None:
    from mdnet_utils.course.zh import zh_command
    zh_command(args.what, out=args.out, force=args.force)


BENCHMARK_NAMES = ("data", "resnet", "train", "data-path")  # bench.BENCHMARKS, without importing it for --help
MODEL_NAMES = ("mdnet", "resnet-sat")                       # models.config.MODEL_PRESETS, likewise


def build_parser() -> argparse.ArgumentParser:
    from mdnet_utils import config

    def common(default) -> argparse.ArgumentParser:
        """-v, -q, --debug: before the command (default False) and after it (SUPPRESS: not overwriting)."""
        flags = argparse.ArgumentParser(add_help=False)
        flags.add_argument("-v", "--verbose", action="store_true", default=default, help="also debug messages")
        flags.add_argument("-q", "--quiet", action="store_true", default=default,
                           help="warnings and errors only, no progress bars")
        flags.add_argument("--debug", action="store_true", default=default,
                           help="on an error, show the traceback instead of one line")
        return flags

    parser = Parser(prog="mdnet", description="MDNet, step by step: course tools.", parents=[common(False)])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    after = common(argparse.SUPPRESS)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[after])
        p.set_defaults(func=func)
        return p

    p = command("data", "build the synthetic BCIDR-like dataset, check a dataset, or convert the authors' layout",
                _cmd_data)
    p.add_argument("--out", help="folder to write: a new or empty one, or one this command built (rebuilt if "
                                 "stale); any other folder is refused, never deleted")
    p.add_argument("--check", metavar="DIR", help="read every entry of an existing dataset and report problems")
    p.add_argument("--from-bcidr", metavar="DIR",
                   help="convert a BCIDR/NMI folder ({name: {caption, label}} JSON + images) into --out")
    p.add_argument("--n-images", type=int, default=config.n_images,
                   help="number of tiles, 24 to 1000000 (default %(default)s)")
    p.add_argument("--size", type=int, default=64, help="tile size in pixels, 16 to 1024 (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")

    p = command("train", "train MDNet or the baseline on a dataset in the annotation.json layout", _cmd_train)
    p.add_argument("--data", required=True, help="dataset folder (annotation.json, images/)")
    p.add_argument("--out", required=True, help="run folder to write (must be new or empty, unless --resume)")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML with 'model' and 'training' sections (a run's "
                                                    "config.json is one); the flags below override it")
    p.add_argument("--model", choices=MODEL_NAMES, help="which report generator (default mdnet)")
    p.add_argument("--epochs", type=int, help="epochs in all, shared over the stages as the recipe shares them "
                                              "(default: the recipe's 8 + 4 + 4; at most 999)")
    p.add_argument("--batch-size", type=int, help="global batch of cases, every stage (default: the recipe's; at "
                                                  "most 4096)")
    p.add_argument("--lr", type=float, help="peak learning rate of every stage (default: the recipe's)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay of every stage (default: the recipe's)")
    p.add_argument("--image-size", type=int, help="images are resized to this: a multiple of 8, 16 to 1024 (at "
                                                  "most 1024; default 64)")
    p.add_argument("--seed", type=int, help="random seed, 0 to 4294967295 (default 0)")
    p.add_argument("--min-count", type=int, help="vocabulary: words seen this often (default 3; refused if it "
                                                 "leaves no word)")
    p.add_argument("--max-len", type=int, help="reports are cut to this many tokens, 3 to 1000 (default 60)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast in the forward pass")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the GPU of this process if any, else cpu)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="processes that read the training images, at most 64 (default %(default)s: this process)")

    p = command("evaluate", "score a run's best model on a split; writes RUN/scores-SPLIT.json", _cmd_evaluate)
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", help="split to score (default %(default)s)")
    p.add_argument("--meteor", action="store_true", help="also METEOR (needs Java; about 15 s)")

    p = command("report", "diagnose and report on image files with a run's best model", _cmd_report)
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, ...)")
    p.add_argument("--out", required=True, help="folder for the cards (<stem>.png) and reports.json; a file there "
                                                "that an earlier report did not write is never overwritten, nor an "
                                                "input image")
    p.add_argument("--beam", type=int, default=1, help="beam size, 1 to 20 (default %(default)s: greedy)")

    p = command("plot", "a run's learning curves and evaluate's scores as PNG", _cmd_plot)
    p.add_argument("run", help="run folder written by train")
    p.add_argument("--out", help="folder for the PNG files (default: the run folder)")

    p = command("bench", "run a benchmark and print its figures as JSON", _cmd_bench)
    p.add_argument("name", choices=BENCHMARK_NAMES, help="which benchmark")

    p = command("notebooks", "course upkeep: execute the notebooks in place (full mode)", _cmd_notebooks)
    p.add_argument("action", choices=["run"])
    p.add_argument("paths", nargs="*", help="notebooks to run (default: all of notebooks/)")
    p.add_argument("--fast", action="store_true", help="fast mode, nothing written back: only the time recorded "
                                                       "in notebooks/runtimes.json (make runtimes)")

    p = command("reference", "train, list or check the reference models shipped in checkpoints/", _cmd_reference)
    p.add_argument("names", nargs="*", metavar="NAME", help="models to train (default: the whole registry)")
    p.add_argument("--seeds", type=int, default=3, help="train the first K seeds of each (default %(default)s)")
    p.add_argument("--list", action="store_true", help="the registry and what is shipped")
    p.add_argument("--check", action="store_true", help="every shipped file loads, is fresh and reproduces its "
                                                        "figures on the first 200 test tiles")
    p.add_argument("--out", help="folder of the references (default: the course's checkpoints/)")

    p = command("site", "render the course as a static HTML site (offline: MathJax bundled)", _cmd_site)
    p.add_argument("--out", default="build/site", help="folder to write (default %(default)s); a site written "
                                                       "before is replaced, another non-empty folder refused")
    p.add_argument("--force", action="store_true", help="replace --out even if this command did not write it")

    p = command("student", "write the student edition: solutions replaced by stubs, outputs cleared", _cmd_student)
    p.add_argument("--out", default="student", help="folder to write (default %(default)s); an edition written "
                                                    "before is replaced, another non-empty folder refused")
    p.add_argument("--force", action="store_true", help="replace --out even if this command did not write it")
    p = command("zh", "the Chinese edition: build it, its student edition, or sync or check its translations", _cmd_zh)
    p.add_argument("what", nargs="*", metavar="ACTION NN", help="build (default), student, sync or check; notebooks")
    p.add_argument("--out", help="folder to write (default build/zh, or student-zh), replaced whole (as site's)")
    p.add_argument("--force", action="store_true", help="replace --out even if this command did not write it")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)  # for this command only: main() may run again (tests)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    try:
        return _run(args)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    """The command, and its exit status."""
    try:
        args.func(args)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, never a traceback; train says where it stopped
        if isinstance(e, Interrupted):
            print(f"error: {flags(str(e))}", file=sys.stderr)
        else:
            print(f"error: mdnet {args.command} interrupted.", file=sys.stderr)
        return 130
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - every failure ends in one line (or a traceback with --debug)
        if args.debug:
            raise
        failure = runtime_failure(e, args)
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr)
            return 1
        print(f"error: {translate(e, args)}", file=sys.stderr)  # bad input: DatasetError, ConfigError, ...
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
