"""Top-K items for one user, ranked as evaluate's user-to-item task ranks a user's cold items.

A user is a history of liked items: the ids given (a new user), or a user of the run's ratings,
whose history is every item they rated at or above the run's like threshold
(``pairs.like_threshold``). The score of candidate ``c`` is the task's
(``cinefuse.evaluate.tasks.user_to_item``): the dot of unit(e_c) with the mean of the unit
history vectors, plus ``w * prior(c)`` for a ``NAME+prior`` model, ``w`` the weight the run
chose on user-to-item validation (``prior_weight_u2i`` of its ``summary.json``; not the
item-to-item ``prior_weight``). Without a model named, the one user-to-item validation chose
answers (Recall@20, with or without its prior). Items in the history, and every item the user
rated, are never recommended; ``among`` restricts the candidates (``"test"`` on the command line:
the split's cold test items). The catalogue and its tie order are the item recommendation's
(:func:`~cinefuse.evaluate.recommend.load_catalogue`: ties by id order), and the list is always
an exact scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.recommend import Recommendation, load_catalogue, titles_for
from cinefuse.evaluate.selection import SUMMARY_KEYS
from cinefuse.evaluate.serving import Served, check_workdir, choose_served, validation_candidates
from cinefuse.fuse.workdir import Workdir

USER_TASK = "user-to-item"
AMONG_TEST = "test"  # --among test: the split's cold test items
NEW_USER_HINT = "for a new user give the items they liked instead (--liked ID1,ID2 or liked=[ids])"


def served_for_users(wd: Workdir, asked: str | None = None) -> Served:
    """The model ``asked`` for (``NAME`` or ``NAME+prior``, the prior at the run's user-to-item
    weight), else the one user-to-item validation chose; a run whose summary lacks the
    user-to-item figures falls back to the item-to-item ones, and ``why`` says so."""
    served = choose_served(wd, asked)  # checks the workdir, the model name and its prior head
    plain_key, prior_key, weight_key = SUMMARY_KEYS[USER_TASK]
    if asked:
        if served.prior_weight is None:
            return served
        weight = wd.summary(served.model).get(weight_key)
        if weight is None:
            why = f"asked for; its summary.json has no {weight_key}: the item-to-item weight {served.prior_weight:g}"
            return Served(served.model, served.prior_weight, why)
        return Served(served.model, float(weight), "asked for")
    scored = validation_candidates(wd, wd.models(), (plain_key, prior_key, weight_key))
    if not scored:
        return Served(served.model, served.prior_weight,
                      f"{served.why} (no {plain_key} in any summary.json: the item-to-item choice)")
    value, _, _, model, weight = max(scored)  # ties: without the prior, then the first model by name
    what = "" if weight is None else f" with its prior at weight {weight:g}"
    return Served(model, weight, f"chosen by user-to-item validation: Recall@20 {value:.4f}{what}, the best of "
                                 f"{len(scored)} candidate(s) in {wd.root}/runs")


def user_history(wd: Workdir, user: int) -> tuple[set[str], set[str]]:
    """(liked item ids, every rated item id) of ``user`` in the run's ratings."""
    from cinefuse.datasets.movielens import load_ratings
    from cinefuse.evaluate.job import RatingsSource, data_sources, ratings_options

    config = wd.config()
    path = data_sources(config)["ratings"]
    if path is None:
        raise CinefuseError(f"{wd.config_path} names no ratings file, so it knows no user; {NEW_USER_HINT}")
    ratings = load_ratings(path, **ratings_options(config, RatingsSource()))
    mine = np.asarray(ratings.user) == int(user)
    if not mine.any():
        raise CinefuseError(f"user {user} has no rating in {path}; {NEW_USER_HINT}")
    items = np.asarray(ratings.item, dtype=str)[mine]
    threshold = float(config.pairs.like_threshold)
    liked = items[np.asarray(ratings.rating)[mine] >= threshold]
    if liked.size == 0:
        raise CinefuseError(f"user {user} rated {items.size} item(s) in {path} but liked none (no rating at or above "
                            f"the like threshold {threshold:g}); {NEW_USER_HINT}")
    return set(liked.tolist()), set(items.tolist())


def among_ids(wd: Workdir, among: str) -> list[str]:
    """The candidates ``--among`` names: ``test`` (the split's cold test items) or a file of item
    ids (separated by commas, spaces or newlines)."""
    if among == AMONG_TEST:
        check_workdir(wd)
        return [str(i) for i in wd.split().get(AMONG_TEST, [])]
    path = Path(among)
    if not path.is_file():
        raise CinefuseError(f"--among {among}: no such file; pass '{AMONG_TEST}' (the split's cold test items) "
                            "or a file of item ids")
    ids = path.read_text(encoding="utf-8", errors="replace").replace(",", " ").split()
    if not ids:
        raise CinefuseError(f"--among {among}: the file holds no item id")
    return ids


def id_set(values: Iterable[str] | str) -> set[str]:
    """Item ids as strings, blanks dropped; one string is read as a comma-separated list."""
    values = values.split(",") if isinstance(values, str) else values
    return {str(v).strip() for v in values} - {""}


def recommend_for_user(workdir, *, liked: Iterable[str] | None = None, user: int | None = None, k: int = 10,
                       model: str | None = None, among: Iterable[str] | None = None,
                       movies=None) -> Recommendation:
    """The ``k`` items for a user (see the module docstring). ``liked``: the item ids a new user
    liked; or ``user``: a user id of the run's ratings. Returns a ``Recommendation`` whose
    ``item`` names the user (``"user 3"``, ``"3 liked item(s)"``) and ``history`` counts the
    liked items the model embeds (those the ranking is made from)."""
    if (liked is None) == (user is None):
        raise CinefuseError("recommend_for_user needs liked=[item ids] or user=ID (one of them)")
    if k < 1:
        raise CinefuseError(f"k={k}: ask for at least 1 recommendation")
    wd = Workdir(workdir)
    served = served_for_users(wd, model)
    ids, candidates, tail, source = load_catalogue(wd, served)
    if user is None:
        history, rated = id_set(liked), set()
        query = f"{len(history)} liked item(s)"
        if not history:
            raise CinefuseError("no liked item given: pass the ids of the items the user liked")
    else:
        history, rated = user_history(wd, user)
        query = f"user {user}"
    rows = np.flatnonzero(np.isin(ids, sorted(history)))
    if rows.size == 0:
        whose = "given" if user is None else f"of user {user}"
        raise CinefuseError(f"none of the {len(history)} liked item(s) {whose} is among the {len(ids)} items "
                            f"model {served.name} embeds; pass item ids (MovieLens movieIds)")
    allowed = ~np.isin(ids, sorted(history | rated))
    if among is not None:
        wanted = sorted(id_set(among))
        allowed &= np.isin(ids, wanted)
        if not np.isin(wanted, ids).any():
            raise CinefuseError(f"none of the {len(wanted)} candidate item(s) asked for (among) is among the "
                                f"{len(ids)} items model {served.name} embeds")
    results = _ranked_for_history(ids, candidates, tail, rows, np.flatnonzero(allowed), k,
                                  titles_for(wd.config(), movies))
    return Recommendation(query, None, served.name, source, results, None, served.why, history=int(rows.size))


def _ranked_for_history(ids: np.ndarray, candidates: np.ndarray, tail: np.ndarray, rows: np.ndarray,
                        pool: np.ndarray, k: int, titles: dict[str, str]) -> list[dict]:
    """The top ``k`` of ``pool`` for the mean unit vector of the history ``rows`` (+ the prior
    tail); ``candidates`` are in tie order, so equal scores keep it."""
    from cinefuse.metrics.device_ranking import user_vectors
    from cinefuse.metrics.ranking import top_k_cosine

    if pool.size == 0:
        return []
    unit = candidates[:, :candidates.shape[1] - tail.size]
    likes = np.zeros((1, len(ids)), bool)
    likes[0, rows] = True
    vector = np.hstack([user_vectors(unit, likes), tail[None, :]]).astype(np.float32)
    top, scores = top_k_cosine(vector, candidates[pool], min(k, pool.size), normalise=False)
    return [{"rank": r + 1, "id": str(ids[pool[c]]), "score": float(s), "title": titles.get(str(ids[pool[c]]))}
            for r, (c, s) in enumerate(zip(top[0].tolist(), scores[0].tolist())) if c >= 0]
