"""Ranks of a ``torchrun`` job, for extraction sharded across processes, GPUs and machines.

``torchrun`` starts one process per rank and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`ranks_from_env` joins the process group they describe
(gloo on CPU; with CUDA the default group is NCCL's and each rank takes GPU ``LOCAL_RANK``) and
gives back a :class:`Ranks`. Without those variables it is a single process and nothing is
initialised.

The ranks never exchange features: each writes its rows of the shared output files. They only
agree, step by step, that every rank got through (:meth:`Ranks.together`): a small object
all-gather over a gloo group, which is also the barrier. When a rank fails, every rank stops at
the same step: the failing one raises its own error, the others :class:`~sparsecheck.errors.RankError`
naming it, so no rank waits forever and rank 0 can say which one failed and why.

Examples
--------
>>> ranks = Ranks()                       # a single process
>>> ranks.is_main, ranks.shard(10), ranks.gather("x")
(True, range(0, 10), ['x'])
>>> with ranks.together("counting"):
...     pass
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from sparsecheck._runtime import exception_reason, one_line, resolve_device
from sparsecheck.errors import ConfigError, RankError, SparsecheckError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

__all__ = ["Ranks", "ranks_from_env", "in_torchrun", "rank_label"]

#: how long a rank waits for the others at a step before giving up (seconds)
STEP_TIMEOUT_S = float(os.environ.get("SPARSECHECK_RANK_TIMEOUT", 6 * 3600))
#: attribute set on an error that was already reported to rank 0 (the CLI lets rank 0 print it)
REPORTED = "_sparsecheck_reported_to_rank0"


def in_torchrun() -> bool:
    """True when the environment describes more than one rank (``torchrun`` set ``WORLD_SIZE``)."""
    return _env_int("WORLD_SIZE", 1) > 1


def rank_label() -> str:
    """``"rank 1/2"`` under torchrun, else ``""`` (for log lines and error messages)."""
    return f"rank {_env_int('RANK', 0)}/{_env_int('WORLD_SIZE', 1)}" if in_torchrun() else ""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Ranks:
    """This process's place in a job: ``rank`` of ``world_size`` (one process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo group the steps agree over (None: one process)

    @property
    def is_main(self) -> bool:
        """True on rank 0, which writes what marks an output complete and shows progress."""
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous rows of ``n``: rank r of W gets ``[r*n//W, (r+1)*n//W)``."""
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (a collective: every rank must call it)."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a collective)."""
        return self.gather(obj)[0]

    @contextlib.contextmanager
    def together(self, step: str) -> Iterator[None]:
        """Run the block on every rank, then wait until all got through it.

        An exception in the block is reported to the other ranks instead of leaving them waiting:
        here it is raised again; on the other ranks :class:`RankError` (exit code of the failing
        rank, its one-line reason) is raised. Every rank must enter the same steps in the same
        order. KeyboardInterrupt is not caught (torchrun stops every rank on a signal).
        """
        if self.world_size == 1:  # nobody to tell
            yield
            return
        error: Exception | None = None
        try:
            yield
        except Exception as exc:
            error = exc
        mine = None if error is None else (getattr(error, "exit_code", 3), _reason(error))
        reports = self.gather(mine)
        failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
        if not failed:
            return
        if error is not None:
            setattr(error, REPORTED, True)
            raise error
        rank, (code, reason) = failed[0]
        more = f" (and {len(failed) - 1} more ranks)" if len(failed) > 1 else ""
        exc = RankError(rank, reason + more, exit_code=int(code), step=step)
        setattr(exc, REPORTED, True)
        raise exc

    def device(self, device: "str | torch.device") -> "torch.device":
        """The device this rank runs on: with CUDA, GPU ``local_rank`` (modulo the GPUs there are)."""
        import torch


        dev = resolve_device(device)
        if dev.type == "cuda" and self.world_size > 1 and dev.index is None:
            dev = torch.device("cuda", self.local_rank % max(1, torch.cuda.device_count()))
            torch.cuda.set_device(dev)
        return dev


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RankError):
        return exc.reason
    if isinstance(exc, SparsecheckError):
        return one_line(exc)
    return f"internal error: {exception_reason(exc)}"


@contextlib.contextmanager
def ranks_from_env(device: "str | torch.device" = "auto") -> Iterator[Ranks]:
    """Join the process group ``torchrun`` describes, or stay one process when it describes none.

    The default group is NCCL's when CUDA is used (``device`` auto or cuda, and a GPU present),
    else gloo's; the steps agree over a separate gloo group either way (small Python objects on
    the CPU). The group is destroyed on exit.
    """
    if not in_torchrun():
        yield Ranks()
        return
    import torch
    import torch.distributed as dist


    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start the job with torchrun "
                          f"(or set every variable torchrun sets)", key="environment")
    use_cuda = torch.cuda.is_available() and str(device) != "cpu"
    backend = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
    timeout = _dt.timedelta(seconds=STEP_TIMEOUT_S)
    dist.init_process_group(backend=backend, timeout=timeout)
    try:
        ranks = Ranks(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=_env_int("LOCAL_RANK", 0),
                      group=dist.new_group(backend="gloo", timeout=timeout))
        logger.debug("joined the process group (%s): rank %d of %d", backend, ranks.rank, ranks.world_size)
        yield ranks
    finally:
        dist.destroy_process_group()
