from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="rerun the notebook's experiments over seeds, beside its figures",
                       description="Rerun every experiment of the chapter over several seeds, set each result "
                                   "beside the notebook's one-run figure, and judge each of its claims.",
                       epilog="examples:\n  deepfit reproduce                         # the demo: four claims "
                              "decided in a few minutes\n"
                              "  deepfit reproduce --smoke                 # all ids in a few minutes (a smoke run, "
                              "labelled as such)\n"
                              "  deepfit reproduce --full --results docs/results\n"
                              "  deepfit reproduce --smoke --until-decided --max-seeds 4   # the rounds, quickly\n"
                              "  deepfit reproduce --full --only selu_100,relu_100 --seeds 3\n"
                              "  deepfit reproduce --full --only table_11_2,table_11_3_11_4   # the chapter's tables\n"
                              "  deepfit reproduce --full --only last_page   # its last page: fast, small, sparse",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--demo", dest="mode", action="store_const", const="demo",
                      help="four claims (batch norm, l2, max-norm, AdaGrad vs RMSprop) on 11,200 of the training "
                           "images, seeds until decided: real verdicts in a few minutes (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="every experiment at the notebook's data and epochs, seeds until each claim is decided "
                           "(entries no claim needs: 5 seeds, 10 for the transfer study)")
    mode.add_argument("--smoke", "--quick", dest="mode", action="store_const", const="quick",
                      help="2,048 images, 2 epochs, 2 seeds: only checks that everything runs (not results)")
    p.set_defaults(mode="demo")
    p.add_argument("--only", help="comma-separated experiment ids (see deepfit list experiments), or a table of the "
                                  "chapter for all its rows: table_11_2, table_11_3_11_4, last_page")
    p.add_argument("--seeds", type=int, help="fixed seeds per experiment (instead of seeds until decided)")
    p.add_argument("--until-decided", action=argparse.BooleanOptionalAction, default=None,
                   help="seeds in rounds until each claim is decided (confirmed, the opposite holds, or equivalent); "
                        "the default of --demo and --full, off for --smoke. See docs/verdicts.md")
    p.add_argument("--min-seeds", type=int, default=3, help="with --until-decided: the first round's seeds (default 3)")
    p.add_argument("--max-seeds", type=int,
                   help="with --until-decided: stop an undecided claim at this many seeds (default 20, or the "
                        "catalog's own for a claim: 30 for the transfer study)")
    p.add_argument("--backend", default="auto", choices=["auto", "local", "group", "pool", "ray"],
                   help="where runs execute (default: auto, printed; see deepfit compare --help)")
    p.add_argument("--jobs", type=int, help="workers for --backend pool / ray")
    p.add_argument("--address", help="Ray cluster address")
    p.add_argument("--out", help="reproduction directory (default runs/reproduce-MODE); rerun to resume")
    p.add_argument("--results", help="also copy the report and tables (not the runs) into this folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from deepfit.experiments.reproduce import publish
    from deepfit.report.content import outside_note
    from deepfit.workflows import reproduce

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    result = reproduce(args.out, mode=args.mode, only=only, seeds=args.seeds, backend=args.backend, jobs=args.jobs,
                       address=args.address, argv=["deepfit", *sys.argv[1:]], until_decided=args.until_decided,
                       min_seeds=args.min_seeds, max_seeds=args.max_seeds)
    print()
    for r in result.summary.itertuples():
        nb = "" if r.notebook is None or r.notebook != r.notebook else f"  notebook {r.notebook:.4f}"
        print(f"{r.id:15s} {r.metric:17s} {r.mean:.4f} ± {r.std:.4f} (n={r.n}){nb}")
    print()
    for v in result.verdicts:
        p = v.paired
        interval = "" if p.cs_low != p.cs_low else \
            f" [{p.cs_low:+.4f}, {p.cs_high:+.4f}]{outside_note(p.mean_diff, p.cs_low, p.cs_high)}"
        print(f"{v.claim.text}: {v.verdict} (diff {p.mean_diff:+.4f}{interval}, n={p.n})")
    if args.results:
        print(f"results copied to {publish(result, args.results)}")
    print(f"report: {result.report.get('html', result.dir)}  ({result.seconds:.0f}s)")
    return 0
