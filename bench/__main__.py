"""`python -m bench`: run every contender side by side and write bench/results/latest.*.

Exit status 1 when a contender answered wrongly or a cell saw errors (its numbers would not
mean anything), 2 on bad arguments or a missing prerequisite.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import chart, image_table, report, runner, servers
from bench.results import RunResults
from bench.servers import ALL_SERVERS
from bench.workload import DEFAULT_MODEL, REPO_ROOT, BenchError

RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOCS = REPO_ROOT / "docs" / "OPTIMIZATION.md"
FULL = {"duration": 5, "warmup": 1, "concurrency": "1,8,32", "batch": "1,32,128"}
QUICK = {"duration": 1, "warmup": 0, "concurrency": "8", "batch": "1,32,128"}


def positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"values must be positive integers: {text!r}")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s cells, c=8 only")
    parser.add_argument("--duration", type=int, help="seconds of load per cell (default 5)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per batch size (default 1)")
    parser.add_argument("--concurrency", type=positive_ints, help="connections, e.g. 1,8,32")
    parser.add_argument("--batch", type=positive_ints, help="rows per request, e.g. 1,32,128")
    parser.add_argument(
        "--servers",
        help="comma list of servers to run (default: all): "
        + ", ".join(server.name for server in ALL_SERVERS),
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every cell N times, report the median"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a folder holding another checkout's service/: measured as 'ours (baseline)' "
        "beside ours (a change's before and after in one run)",
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model file")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--note", default="", help="a line for the report, e.g. conditions")
    parser.add_argument(
        "--images",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include bench/image_report.py's table (default: on, off with --quick)",
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"also put the results into {DOCS.relative_to(REPO_ROOT)} (between its markers)",
    )
    parser.add_argument(
        "--image-variants",
        default="basic,cpu",
        help="images for the image report (default: %(default)s; gpu adds gigabytes of CUDA)",
    )
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.duration = args.duration or preset["duration"]
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    args.concurrency = args.concurrency or positive_ints(str(preset["concurrency"]))
    args.batch = args.batch or positive_ints(str(preset["batch"]))
    args.images = not args.quick if args.images is None else args.images
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error(
            f"--duration and --rounds must be ≥ 1 and --warmup ≥ 0, "
            f"got {args.duration}, {args.rounds}, {args.warmup}"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        names = args.servers.split(",") if args.servers else None
        chosen = runner.select_servers(names)
        if args.baseline is not None:
            chosen = (*chosen, servers.baseline(args.baseline.resolve()))
        options = runner.RunOptions(
            model=args.model.resolve(),
            batches=args.batch,
            concurrencies=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            rounds=args.rounds,
            servers=chosen,
            note=args.note,
            logs=args.out / "raw" / "logs",
        )
        results = runner.run(options)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    if args.images:
        runner.log("image report (bench/image_report.py)")
        results.image_report, skipped = image_table.image_report(args.image_variants)
        if skipped:
            results.skipped["image report"] = skipped
    command = ("python -m bench " + shlex.join(argv)).strip()
    write_outputs(results, args.out, command)
    if args.update_docs:
        try:
            report.update_docs(DOCS, results, command, args.out / "latest.png")
        except BenchError as error:
            print(f"bench: {error}", file=sys.stderr)
            return 2
        runner.log(f"updated {DOCS}")
    return 1 if results.failed or any(not cell.valid for cell in results.cells) else 0


def write_outputs(results: RunResults, out: Path, command: str) -> None:
    results.save(out / "latest.json")
    (out / "latest.md").write_text(report.render(results, command))
    chart.draw(results, out / "latest.png")
    runner.log(f"wrote {out / 'latest.md'}, {out / 'latest.png'}, {out / 'latest.json'}")
    print("\n".join(report.target_table(results)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
