"""``cinefuse evaluate`` and ``cinefuse recommend``. Only argparse and the protocol names here; the handlers import
the stage."""

from __future__ import annotations

import argparse

from cinefuse.helptext import HelpFormatter, hidden_alias
from cinefuse.choices import EVAL_PROTOCOLS, EVAL_TASKS, ON_BAD_RATINGS, TIE_BREAKS
from cinefuse.runlog import logged  # W/logs/<command>-<UTC time>.log of each run


def register(subparsers) -> None:
    register_evaluate(subparsers)
    register_recommend(subparsers)
    register_compare(subparsers)


def register_evaluate(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate",
        help="score every trained model of a fuse workdir and the baselines (cold-start item-to-item and user-to-item)",
        description=(
            "Embed every item with each trained model of WORKDIR (grid runs included), write the "
            "fused embeddings to a store (W/embeddings, feature sets fused/<model>, and fused/<model>.prior "
            "with each task's prior weight for a model with a prior head), rank by cosine "
            "and score Precision, Recall, HitRate, nDCG, MRR and the thesis's graded nDCG at every K, "
            "plus catalogue coverage, intra-list genre diversity and novelty, for the models and the "
            "random, popularity and raw-feature cosine baselines. Two tasks (--task, default both): "
            "item-to-item (a cold item is the query, the other cold items its candidates) and "
            "user-to-item (each user with a liked training item and a liked cold item ranks the cold "
            "items by the mean cosine to their liked training items; Recall and calibrated recall at "
            "K plus 20, 50 and 100). Each table's verdict names the model validation chose (the "
            "task's validation metric, mean over seeds; the best test row only shown, labelled "
            "'chosen on test') against the best raw baseline, with coverage@10 of both; models "
            "trained under several seeds (runs <model>@seed<N>) are reported as their mean, spread "
            "and a 95% bootstrap that resamples seeds, then queries. Prints a compact table (--full: every "
            "metric) and writes the tables as Markdown, a self-contained HTML page, CSV, JSON and PNG "
            "plots to W/evaluation/<protocol>/ (user-to-item: its user-to-item/ folder)."
        ),
        formatter_class=HelpFormatter,
    )
    ev.add_argument("--workdir", required=True, help="the fuse workdir (config.json, split.json, runs/)")
    ev.add_argument("-k", dest="k", default="1,3,5,10", help="cut-offs K, comma-separated")
    hidden_alias(ev, "--k", "k")
    ev.add_argument(
        "--protocol",
        choices=EVAL_PROTOCOLS,
        default="cold-item",
        help="cold-item: queries and candidates are the unseen test items; thesis: all rated items "
        "(the thesis's item-based protocol, test items seen in training; for comparison)",
    )
    ev.add_argument(
        "--threshold", type=float, default=None,
        help="a rating at or above this is a like (default: the like threshold the run's pairs used, else 4)")
    ev.add_argument("--store", help="feature store (default: the one named in the workdir's config.json)")
    ev.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// store")
    ev.add_argument("--ratings", help="ratings file or MovieLens folder (default: from config.json)")
    ev.add_argument("--movies", help="movies file or MovieLens folder (default: from config.json)")
    ev.add_argument("--ratings-sep", metavar="SEP", help="the ratings file's separator (',', tab, '::', ';', '|', spaces; "
                    "default: data.ratings_sep of config.json, else recognised from the content)")
    ev.add_argument("--ratings-columns", metavar="USER,ITEM,RATING[,TIMESTAMP]",
                    help="the ratings file's header names (or 1-based column numbers without a header) for "
                    "user, item, rating and timestamp (default: data.ratings_columns of config.json, else "
                    "MovieLens names and the usual aliases)")
    ev.add_argument("--on-bad-ratings", choices=ON_BAD_RATINGS,
                    help="non-finite, negative or too large ratings and (user, item) pairs rated differently: "
                    "error stops with counts and examples, drop removes them, keep-last keeps a pair's latest "
                    "rating and drops bad values (default: data.on_bad_ratings of config.json, else error)")
    ev.add_argument(
        "--fused-store",
        help="write the fused embeddings to this local store instead of W/embeddings "
        "(adds shards; never wipes it)",
    )
    ev.add_argument("--task", choices=(*EVAL_TASKS, "both"), default="both",
                    help="item-to-item: a cold item is the query, the other cold items its candidates; "
                    "user-to-item: each warm user ranks the cold items from their liked training items; both: "
                    "one table each (user-to-item needs the cold-item protocol)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    ev.add_argument("--tie-break", choices=TIE_BREAKS, default="random",
                    help="order that breaks score ties in every row: a seeded random candidate order, or "
                    "id order (the old rule, for comparison; ids follow catalogue age and popularity)")
    ev.add_argument("--tie-seed", type=int, default=0, help="seed of the random tie order")
    ev.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    ev.add_argument("--full", action="store_true",
                    help="print every metric at every K, the beyond-accuracy, seed and stratum tables (default: the "
                    "compact table of nDCG@10, HitRate@10, the verdict metric, their 95%% intervals, coverage@10 "
                    "and train seconds; results.md and results.html always hold both, results.csv every metric)")
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    hidden_alias(ev, "--quiet", "progress", action="store_false")
    ev.set_defaults(handler=run_evaluate_command)


def register_recommend(subparsers) -> None:
    rec = subparsers.add_parser(
        "recommend",
        help="top-K items most similar to one item, or for one user, from a trained model",
        description=(
            "--item ID: the K items whose fused embeddings are closest (cosine) to that item's.\n"
            "--user ID or --liked ID1,ID2,...: the K items for a user, ranked as evaluate's user-to-item\n"
            "task ranks them: cosine to the mean of the unit embeddings of the items the user liked\n"
            "(plus w * prior for a NAME+prior model, w the run's user-to-item prior weight). --user takes\n"
            "the liked items (rating at or above the run's like threshold) from the run's ratings,\n"
            "--liked names them for a new user; nothing the user liked or rated is recommended.\n\n"
            "Scores, and titles where movie metadata is known. The model defaults to the one validation\n"
            "chose (items: highest validation nDCG@10; users: highest validation user-to-item Recall@20;\n"
            "each with or without its popularity prior; the output says which). Films added to the\n"
            "feature store after training are embedded by the trained model."
        ),
        formatter_class=HelpFormatter,
    )
    rec.add_argument("--workdir", required=True, help="the fuse workdir")
    rec.add_argument("--item", help="item id (MovieLens movieId): list the items like it")
    rec.add_argument("--user", type=int, metavar="ID",
                     help="user id of the run's ratings: list the items for that user (not with --item)")
    rec.add_argument("--liked", metavar="ID1,ID2,...",
                     help="item ids a new user liked, comma-separated: list the items for them (not with --item)")
    rec.add_argument("--among", metavar="test|FILE",
                     help="with --user/--liked: only recommend from these candidates: 'test' (the split's cold "
                     "test items) or a file of item ids (default: every item the model embeds)")
    rec.add_argument("-k", dest="k", type=int, default=10, help="how many items")
    hidden_alias(rec, "--k", "k", type=int)
    rec.add_argument("--model", help="which trained model (a folder under W/runs), or NAME+prior to rank by "
                                     "cos + w * prior (w: the prior weight validation chose for the task, "
                                     "summary.json prior_weight, or prior_weight_u2i for a user)")
    rec.add_argument("--movies", help="movies file or MovieLens folder for titles (default: from config.json)")
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.add_argument("--exact", action="store_true",
                     help="scan exactly even when W/index/<model> exists (a user's list is always exact)")
    rec.set_defaults(handler=run_recommend_command)


@logged("evaluate")
def run_evaluate_command(args) -> int:
    import json

    from cinefuse.evaluate.job import RatingsSource
    from cinefuse.evaluate.report import format_compact, format_table
    from cinefuse.evaluate.run import run_evaluate

    store = args.store
    ratings = RatingsSource(args.ratings, args.ratings_sep, args.ratings_columns, args.on_bad_ratings)
    results = run_evaluate(
        args.workdir,
        ks=args.k,
        protocol=args.protocol,
        threshold=args.threshold,
        store=store,
        endpoint_url=args.endpoint_url,
        ratings=ratings,
        movies=args.movies,
        fused_store=args.fused_store,
        seed=args.seed,
        progress=args.progress,
        tie_break=args.tie_break,
        tie_seed=args.tie_seed,
        task=args.task,
    )
    tables = results if isinstance(results, dict) else {results.task: results}
    if args.json:
        first, *rest = tables.values()
        print(json.dumps({**first.to_json(), **{r.task: r.to_json() for r in rest}}, indent=2, default=float))
        return 0
    for i, r in enumerate(tables.values()):
        print(("\n\n" if i else "") + (format_table(r) if args.full else format_compact(r)))
        if r.outputs:
            print(f"\nwritten: {', '.join(r.outputs.values())}")
    return 0


@logged("recommend")
def run_recommend_command(args) -> int:
    import json

    from cinefuse.errors import CinefuseError
    from cinefuse.evaluate.recommend import format_recommendation, recommend
    from cinefuse.evaluate.recommend_user import among_ids, recommend_for_user
    from cinefuse.fuse.workdir import Workdir

    given = [flag for flag, value in (("--item", args.item), ("--user", args.user), ("--liked", args.liked))
             if value is not None]
    if len(given) != 1:
        raise CinefuseError(("give one of --item, --user or --liked" if not given else
                             f"{' and '.join(given)} cannot be combined") + ": --item ID lists the items like one "
                            "item, --user ID the items for a user of the ratings, --liked ID1,ID2 for a new user")
    if args.item is not None:
        if args.among is not None:
            raise CinefuseError("--among restricts a user's list (--user or --liked), not --item's")
        rec = recommend(args.workdir, args.item, k=args.k, model=args.model, movies=args.movies,
                        use_index=not args.exact)
    else:
        among = among_ids(Workdir(args.workdir), args.among) if args.among is not None else None
        rec = recommend_for_user(args.workdir, liked=args.liked, user=args.user, k=args.k, model=args.model,
                                 among=among, movies=args.movies)
    print(json.dumps(rec.to_json(), indent=2) if args.json else format_recommendation(rec))
    return 0


def register_compare(subparsers) -> None:
    cmp = subparsers.add_parser(
        "compare",
        help="one table of every model of several fuse workdirs, re-ranked on the cold items they share",
        description=(
            "Evaluate every trained model of each WORKDIR (and its baselines) on the items that are cold "
            "(split.json test) in every run and that every run can rank, and for user-to-item on the users "
            "every run scores, so that every row ranks the same candidates for the same queries. Items cold "
            "in one run but training or validation in another are dropped and counted. Runs over different "
            "ratings or like thresholds are refused. Rows are named <run>/<model> (random and popularity "
            "once); each carries its 95% bootstrap intervals, and paired bootstraps over the shared queries "
            "compare named rows (--pair A B; default: the model each run chose on validation against the "
            "first run's, and each against the best raw-feature baseline). Prints the compact table and "
            "writes compare.md, compare.csv, compare.json and the per-query values (per_query.parquet, "
            "per_query.csv.gz) to --out (user-to-item: its user-to-item/ folder)."
        ),
        formatter_class=HelpFormatter,
    )
    cmp.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="fuse workdirs (each with config.json, "
                     "split.json, runs/; each reads the store, ratings and movies its config.json names)")
    cmp.add_argument("--names", help="comma-separated run names, one per WORKDIR (default: the folder names)")
    cmp.add_argument("--task", choices=(*EVAL_TASKS, "both"), default="both",
                     help="item-to-item, user-to-item, or both (one table each)")
    cmp.add_argument("--out", default="cinefuse-compare", help="folder for the tables and per-query files")
    cmp.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"), default=None,
                     help="compare row (or model) A with B, paired over the shared queries; repeatable (when "
                     "not given: each run's model chosen on validation against the first run's, and each "
                     "against the best raw-feature baseline)")
    cmp.add_argument("-k", dest="k", default="1,3,5,10", help="cut-offs K, comma-separated")
    cmp.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    cmp.add_argument("--tie-break", choices=TIE_BREAKS, default="random",
                     help="order that breaks score ties in every row: a seeded random candidate order, or id order")
    cmp.add_argument("--tie-seed", type=int, default=0, help="seed of the random tie order")
    cmp.add_argument("--json", action="store_true", help="print compare.json (per task) instead of the table")
    cmp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    cmp.set_defaults(handler=run_compare_command)


def run_compare_command(args) -> int:
    import json

    from cinefuse.evaluate.compare import compare_runs
    from cinefuse.evaluate.compare_report import compare_json, format_compare, write_comparisons

    comps = compare_runs(args.workdirs, names=args.names, task=args.task, ks=args.k, pairs=args.pair or (),
                         seed=args.seed, tie_break=args.tie_break, tie_seed=args.tie_seed, progress=args.progress)
    write_comparisons(comps, args.out)
    if args.json:
        print(json.dumps({task: compare_json(c) for task, c in comps.items()}, indent=2, default=float))
        return 0
    for i, comp in enumerate(comps.values()):
        print(("\n\n" if i else "") + format_compare(comp))
        print(f"\nwritten: {', '.join(comp.outputs.values())}")
    return 0
