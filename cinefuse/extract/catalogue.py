"""Which store config a run writes under: the store's own when the options match (a growing
catalogue), a fresh fit for a new store, and one line naming the choice otherwise.

Extracting into a store that already holds items under the same options extracts only the new
ids, with the store's frozen TF-IDF (:mod:`cinefuse.extract.transforms`): the rows already there
never change, and a film added after a model was trained is embedded in the same space. A run
whose options differ from the store's stops before it extracts anything and says which options
differ: extract into a new store, or pass ``--refit`` to fit again on this manifest and
re-extract every item (the store's shards are replaced).
"""

from __future__ import annotations

from pathlib import Path

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.transforms import load_transform, save_transform

# keys of the store config that record a fit, not an option
FITTED_KEYS = ("tfidf_corpus", "tfidf_transform")


def options_of(stored: dict) -> dict:
    """A store config without what was fitted: the options a run compares with its own."""
    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in stored.items()}
    for key in FITTED_KEYS:
        out.get("text", {}).pop(key, None)
    return out


def differences(mine: dict, theirs: dict, prefix: str = "") -> list[str]:
    """``key: store A, this run B`` for every leaf that differs (dotted keys)."""
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = theirs.get(key, "(none)"), mine.get(key, "(none)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(b, a, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: store {a!r}, this run {b!r}")
    return out


def run_store_config(config: ExtractConfig, extractor, items: list, root: Path, existing: dict[str, dict]) -> dict:
    """The config this run's shards are written under, with ``extractor``'s corpus-dependent
    backbones fitted (fresh) or loaded (the store's). ``existing``: the store's configs (empty
    for a new store, or with ``--refit`` / ``--overwrite``); those not written by extract
    (``store import``, fused embeddings) are no part of the choice."""
    wanted = config.feature_config()
    tfidf = extractor.tfidf
    # only extraction configs count: a store may also hold imported features or fused embeddings
    existing = {digest: c for digest, c in existing.items() if isinstance(c, dict) and "extract_format" in c}
    for stored in existing.values():
        if options_of(stored) != wanted:
            continue
        name = stored.get("text", {}).get("tfidf_transform")
        if tfidf is None:
            return stored
        if name:
            tfidf.load_state(load_transform(root, name))
            return stored
        # a store from before transforms were kept: only the same corpus can resume it
        if extractor.fit_text(items) == stored.get("text", {}).get("tfidf_corpus"):
            return stored
        raise CinefuseError(
            f"store {root} was extracted before cinefuse kept its fitted TF-IDF, from another list of items: "
            "extract into a new store, or pass --refit to fit again and re-extract every item")
    if existing:
        theirs = options_of(next(iter(existing.values())))
        diff = differences(wanted, theirs)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise CinefuseError(
            f"store {root} was extracted with other options ({shown}): extract into a new store, or "
            "pass --refit to re-extract every item with these options (replaces the store's shards)")
    fingerprint = extractor.fit_text(items)
    out = config.feature_config()
    if tfidf is not None:
        out["text"]["tfidf_corpus"] = fingerprint
        out["text"]["tfidf_transform"] = save_transform(root, "tfidf", tfidf.state())
    return out
