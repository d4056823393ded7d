from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md and a standalone report.html for an experiment directory",
                       description="Tables (final metrics with 95%% t intervals, paired comparisons with the "
                                   "reference) and figures (learning curves with bands, final metric per variant). "
                                   "Reads the runs; never trains.")
    p.add_argument("dir", help="an experiment directory made by deepfit compare")
    p.add_argument("--out", help="where to write the report (default: the experiment directory)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.report import write_report

    paths = write_report(args.dir, args.out)
    print(f"markdown: {paths['markdown']}\nhtml: {paths['html']}")
    return 0
