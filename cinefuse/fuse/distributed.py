"""Training on several processes: who the processes are, starting ``jax.distributed``, and which
process writes.

Every process runs the same command on the same store and workdir (a shared filesystem); only its
process id differs. Where a process learns its place, first match wins:

1. the command's ``--coordinator HOST:PORT``, ``--num-processes N``, ``--process-id I``;
2. the environment: ``CINEFUSE_COORDINATOR``, ``CINEFUSE_NUM_PROCESSES``, ``CINEFUSE_PROCESS_ID``,
   and for the process id also ``JOB_COMPLETION_INDEX`` (a Kubernetes indexed Job sets it);
3. whatever ``jax.distributed.initialize`` detects itself (SLURM's ``SLURM_PROCID``,
   ``SLURM_NTASKS`` and node list under ``srun``; Open MPI; Cloud TPU).

Data parallel over the processes: the mesh spans ``jax.devices()`` (every process's devices), the
table and parameters are replicated, and each step's batch is sharded over the mesh, so each
process computes its shard of the batch and the gradients meet in one all-reduce (gloo on CPU,
NCCL on GPU). Every process takes the same decisions (validation runs on replicated embeddings),
so they stay in step; process 0 alone writes the workdir's records, and orbax writes checkpoints
from the primary host (process 0) for the replicated arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cinefuse.errors import CinefuseError

ENV_COORDINATOR = "CINEFUSE_COORDINATOR"
ENV_NUM_PROCESSES = "CINEFUSE_NUM_PROCESSES"
ENV_PROCESS_ID = "CINEFUSE_PROCESS_ID"
ENV_INDEXED_JOB = "JOB_COMPLETION_INDEX"


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place; ``None`` fields are left to ``jax.distributed``'s cluster detection."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.coordinator, self.num_processes, self.process_id))


def _int_from(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CinefuseError(f"{name} must be an integer (got {value!r})") from None


def resolve_process_group(coordinator: str | None = None, num_processes: int | None = None,
                          process_id: int | None = None, environ=None) -> ProcessGroup:
    """The options given, else the environment (see the module docstring), checked."""
    env = os.environ if environ is None else environ
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    num = num_processes if num_processes is not None else _int_from(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
    pid = process_id
    if pid is None:
        pid = _int_from(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
    if pid is None:
        pid = _int_from(env.get(ENV_INDEXED_JOB), ENV_INDEXED_JOB)
    if coordinator is not None and (":" not in coordinator or not coordinator.rsplit(":", 1)[1].isdigit()):
        raise CinefuseError(f"--coordinator {coordinator!r} must be HOST:PORT (e.g. 10.0.0.1:1234), "
                            "the address of process 0")
    if num is not None and num < 1:
        raise CinefuseError(f"--num-processes must be at least 1 (got {num})")
    if pid is not None and pid < 0:
        raise CinefuseError(f"--process-id must be at least 0 (got {pid})")
    if pid is not None and num is not None and pid >= num:
        raise CinefuseError(f"--process-id {pid} is out of range for --num-processes {num} (ids are 0..{num - 1})")
    return ProcessGroup(coordinator, num, pid)


def start(group: ProcessGroup) -> None:
    """``jax.distributed.initialize`` for ``group``; call before any other JAX work in the process."""
    import jax

    # gloo is jax 0.10's default for CPU collectives; set here so that a CPU run never falls back
    # to no cross-process collectives if the default changes
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=group.coordinator, num_processes=group.num_processes,
                                   process_id=group.process_id)
    except (ValueError, RuntimeError) as exc:
        if "already initialized" in str(exc).lower():
            return
        raise CinefuseError(
            f"jax.distributed could not start ({exc}); give --coordinator HOST:PORT, --num-processes and "
            f"--process-id (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}), or run under srun") from exc


def is_writer() -> bool:
    """True in the one process that writes the workdir's records (process 0; also a lone process)."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process gets here (a no-op in a lone process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
