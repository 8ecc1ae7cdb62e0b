"""`python -m src.report <sweep dir | run dirs ...> [--baseline KEY=VALUE ...] [--out DIR]`: compare a sweep's runs
(see src/report/write.py; statistics: src/report/stats.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError, print_error


def default_out(paths: list[Path]) -> Path:
    """<sweep dir>/report; for run dirs given one by one, report/ beside them (never inside a run dir)."""
    from .collect import is_run_dir

    paths = [p.resolve() for p in paths]
    base = paths[0] if len(paths) == 1 else Path(__import__("os").path.commonpath(paths))
    while is_run_dir(base):
        base = base.parent
    return base / "report"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="sweep dirs (multirun/<date>/<time>) or run dirs")
    parser.add_argument("--out", type=Path, help="where to write (default <sweep dir>/report)")
    parser.add_argument("--metric", help="the headline metric to compare on, e.g. test/bleu (default: each run's own)")
    parser.add_argument("--baseline", nargs="+", action="extend", metavar="KEY=VALUE",
                        help="the configuration the others are tested against, e.g. arch=encdec (config keys: "
                             "arch, size, decode, optim.lr ...; several to name one configuration; after the paths)")
    parser.add_argument("--buckets", default="0-10,10-20,20-30,30+", help="source-length buckets in words")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="collect the runs of a W&B project (needs login)")
    parser.add_argument("--group", help="the W&B group to collect / to log the report run into")
    parser.add_argument("--no-wandb-log", action="store_true", help="do not log the report as a W&B run")
    args = parser.parse_args(argv)
    try:
        from .aggregate import parse_buckets
        from .collect import collect, collect_wandb, unreadable
        from .write import log_to_wandb, print_table, write_report

        buckets = parse_buckets(args.buckets)
        if not args.paths and not args.wandb:
            raise ConfigError("give a sweep dir, run dirs, or --wandb entity/project")
        if args.wandb and not args.out:
            raise ConfigError("--wandb needs --out DIR (there is no local sweep dir to write into)")
        members = collect(args.paths) if args.paths else []
        if args.wandb:
            members += collect_wandb(args.wandb, args.group)
        if not any(m.record for m in members):  # nothing to compare: no empty table, no W&B run of 0 configurations
            where = ", ".join([*map(str, args.paths), *([f"wandb:{args.wandb}"] if args.wandb else [])])
            raise ConfigError(f"no readable run under {where} ({unreadable(members)})")
        out = (args.out or default_out(args.paths)).resolve()
        known = {k for m in members for k in (m.record or {}).get("metrics", {})}
        if args.metric and args.metric not in known:
            raise ConfigError(f"--metric {args.metric} is in no run's metrics; choose one of: {', '.join(sorted(known))}")
        result = write_report(members, out, buckets, args.metric, args.baseline)
    except ConfigError as e:
        print_error(str(e))
        return 2
    print_table(result)
    if not args.no_wandb_log:
        run_dir = log_to_wandb(result, members, out, args.group)
        print(f"W&B report run: {run_dir}")
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
