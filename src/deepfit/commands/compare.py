from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="run an experiment's variants over seeds; write tables, statistics and a report",
        description="Run every (variant, seed) of an experiment file into an experiment directory. Rerunning "
                    "skips finished runs and redoes interrupted ones; two compares on one directory share the work.",
        epilog="examples:\n  deepfit compare configs/sweeps/activations.toml --out experiments/act\n"
               "  deepfit compare configs/sweeps/deep_100_crossed.toml --seeds 3x3   # init x order cells\n"
               "  deepfit compare configs/sweeps/activations.toml --seeds 3 --backend pool --jobs 2 "
               "training.epochs=2\n  deepfit compare configs/sweeps/activations.toml --until-decided --max-seeds 12\n"
               "  deepfit compare sweep.toml --backend ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", help="an experiment TOML file (base, seeds, [[variants]])")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override a config value in every variant, e.g. training.epochs=2")
    p.add_argument("--out", help="experiment directory (default: experiments/NAME)")
    p.add_argument("--seeds", help="a count (5: seeds 0..4), a list (0,3,7), or init x order counts (5x5: 25 "
                                   "cells, init and data order apart); replaces the file's seeds")
    p.add_argument("--backend", default="auto", choices=["auto", "local", "group", "pool", "ray"],
                   help="where runs execute. auto (default, printed): on an accelerator 'group' (the seeds of "
                        "a variant in one compiled program), on a multi-core CPU 'pool' (one single-threaded "
                        "worker per core) when the work is worth it, else 'local' (this process)")
    p.add_argument("--jobs", type=int, help="runs at once for pool/ray (default: one per CPU core)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, or ray://HOST:10001); default: a local Ray")
    p.add_argument("--until-decided", action="store_true",
                   help="train in rounds and stop each comparison once it is decided (better, worse or equivalent "
                        "within the experiment's equivalence margin), instead of the file's fixed seeds; see "
                        "docs/verdicts.md")
    p.add_argument("--min-seeds", type=int, default=3, help="with --until-decided: the first round's seeds (default 3)")
    p.add_argument("--max-seeds", type=int, default=20,
                   help="with --until-decided: stop an undecided comparison at this many seeds (default 20)")
    p.add_argument("--no-report", action="store_true", help="write the tables only, not report.md/html")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.workflows import compare
    from deepfit.report.content import fmt, interval_text

    if not args.until_decided and (args.min_seeds != 3 or args.max_seeds != 20):
        from deepfit.errors import ConfigError

        raise ConfigError("--min-seeds and --max-seeds bound --until-decided's rounds: add --until-decided, or give "
                          "fixed seeds with --seeds")
    result = compare(args.experiment, out=args.out, seeds=args.seeds, overrides=args.overrides,
                     backend=args.backend, jobs=args.jobs, address=args.address, report=not args.no_report,
                     until_decided=args.until_decided, min_seeds=args.min_seeds, max_seeds=args.max_seeds)
    metric = result.experiment.metric
    print(f"experiment: {result.dir}  ({len(result.trained)} run(s) trained now, {len(result.finals)} finished)")
    if not result.finals.empty:
        print(f"final {metric}: mean [95% CI] over seeds")
        for r in result.summary().itertuples():
            print(f"  {r.variant:20s} {fmt(r.mean)}  {interval_text(r.ci_low, r.ci_high, r.clipped, r.note)}  n={r.n}")
        comparisons = result.comparisons()
        if len(comparisons):
            print(f"against {result.experiment.reference} (verdicts by the sequential rule, {len(comparisons)} "
                  f"comparison(s) judged together; interval: anytime-valid at 1 - 0.05/{len(comparisons)}; "
                  "see docs/verdicts.md)")
        for r in comparisons.itertuples():
            print(f"  {comparison_line(r)}")
    if result.report:
        print(f"report: {result.report['html']}")
    if result.missing:
        wanted = [(v, s) for v, s in result.missing]
        print(f"missing runs: {len(wanted)}")
        return 1 if not args.until_decided else 0
    return 0


def comparison_line(r) -> str:
    """One row of ``ExperimentResult.comparisons()`` in words: the verdict, the seeds it took, the intervals."""
    from deepfit.report.content import fmt, fmt_p, needed_text, pair_text, superior_text, verdict_interval_text

    needed = needed_text(r.verdict, r.to_decide, r.test)
    images = "" if r.images_low != r.images_low else f", seeds + images {pair_text(r.images_low, r.images_high)}"
    seeds = "" if r.verdict.startswith("undecided at") else f" at {r.n} seeds"  # an undecided verdict says its own
    return (f"{r.variant} vs {r.reference}: {r.verdict}{seeds}: {fmt(r.mean_diff)} "
            f"{verdict_interval_text(r.mean_diff, r.cs_low, r.cs_high)} (95% seeds {pair_text(r.ci_low, r.ci_high)}{images}; "
            f"d_z {fmt(r.effect_size, 2)}, P(variant > reference) "
            f"{superior_text(r.p_superior, r.p_superior_low, r.p_superior_high)}; {r.test} p={fmt_p(r.p_value)})"
            + (f"; seeds that would decide it: {needed}" if needed != "—" else ""))
