"""fuse: JIT-trained intermodal fusion Siamese networks over the store (JAX/Flax; never torch).

``run_fuse(config, workdir, grid=False)`` trains (``cinefuse.fuse.train``); ``list_models`` and
``embed_items`` read trained models back (``cinefuse.fuse.embed``). Imported lazily so that
``import cinefuse.fuse`` stays cheap for the CLI.
"""


def run_fuse(config, workdir, grid: bool = False, log=None):
    from cinefuse.fuse.train import run_fuse as _run

    return _run(config, workdir, grid=grid, log=log)


def list_models(workdir):
    from cinefuse.fuse.embed import list_models as _list

    return _list(workdir)


def embed_items(workdir, model, table=None):
    from cinefuse.fuse.embed import embed_items as _embed

    return _embed(workdir, model, table)
