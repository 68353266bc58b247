"""Data-parallel training over torch.distributed: N ranks, each training 1/N of every batch.

Legend: B a global batch (``batch_size`` examples), b one rank's shard of it, N ranks,
D dim, R rows a shard touches.

Every rank holds the whole model and the whole round's examples, and walks them in the same
seeded order; step k's global batch is split by stride (rank r takes positions r, r + N,
...), about B/N examples each. A rank computes its shard's loss and gradients, then:

- the user tower (dense, a few thousand parameters) goes through DistributedDataParallel:
  its gradients are averaged over the ranks during the backward pass
  (``find_unused_parameters``: the dislike channel's weight is unused by a batch without a
  dislike);
- the embedding tables (sparse gradients: the R rows the shard touched, (R, D) values) are
  all-reduced as sparse tensors (gloo gathers every rank's indices and values and sums
  them) and divided by N. DDP is told to leave them alone: it cannot reduce a sparse table
  that a step leaves unused (the per-user table, without per-user embeddings), and a dense
  all-reduce of an (N_items, D) table per step would move the whole table.

A shard's loss is scaled by N·b/B, so the averaged gradient is the gradient of the global
batch's mean loss however the batch splits; a rank left without an example (the last batch
of an epoch) computes a zero-weighted loss on one example, so every rank takes part in every
collective. Every rank then applies the same optimiser steps (row-wise Adagrad, Adam) to the
same reduced gradients, and updates the logQ frequency estimate with the global batch's
labels: parameters and optimiser state stay identical without being sent. ``check_identical``
compares a digest of them across ranks after every training call; a difference fails it
(``Diverged``) before anything is exported.

What a shard changes: its in-batch negatives are its own b labels, plus S sampled items drawn
by its own generator, and the logQ correction counts a batch of b labels, so the correction
stays that of the candidate set the rank scores.

Rank 0 drives the others through ``announce`` (a ``Plan`` on a control group that waits
without a time limit: the other ranks idle there between rounds). A collective that fails —
a rank died (gloo sees the closed connection at once) or hung (the group's timeout) — raises
``GroupLost``: the group cannot be used again and the process exits; its launcher stops the
other ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from veto.errors import GroupLost

# The control group carries rank 0's plans; the other ranks wait there while it idles.
_CONTROL_TIMEOUT = timedelta(days=365)


class Diverged(RuntimeError):
    """The ranks' parameters or optimiser state differ after training."""


@dataclass(frozen=True)
class Rank:
    """Where this process sits in the group (torchrun's variables, or ``veto train --nproc``)."""

    rank: int
    world: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str]) -> Rank | None:
        """RANK and WORLD_SIZE as torchrun sets them; None outside a group of 2 or more."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
            rank = int(environ.get("RANK", "0"))
        except ValueError:
            return None
        if world < 2 or not 0 <= rank < world:
            return None
        return cls(rank=rank, world=world)


@dataclass
class Plan:
    """What rank 0 tells the other ranks before a training call (``examples`` None: stop)."""

    learner: Any = None  # rank 0's whole learner when the others do not hold it yet
    changes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    examples: Any = None
    epochs: int = 0
    stream: bool = False


@dataclass(frozen=True)
class Shard:
    """One rank's part of a global batch."""

    rows: npt.NDArray[np.int64]  # example positions
    scale: float  # the loss multiplier that makes the averaged gradient the global mean's
    size: int  # examples that count (0 for the zero-weighted stand-in)


class DataParallel:
    """This rank's view of a gloo group: sharding, gradient reduction, rank 0's plans."""

    def __init__(self, rank: Rank, *, control: Any) -> None:
        self.rank = rank.rank
        self.world = rank.world
        self._control = control
        self.synced: str | None = None  # rank 0: the learner the other ranks hold
        self.lost = False  # a collective failed: nothing more is sent

    @classmethod
    def join(cls, rank: Rank, *, timeout: float) -> DataParallel:
        """Rendezvous (``env://``: MASTER_ADDR / MASTER_PORT, as torchrun sets them) and open
        the groups; ``timeout`` seconds bound every training collective."""
        try:
            dist.init_process_group(
                "gloo",
                init_method="env://",
                rank=rank.rank,
                world_size=rank.world,
                timeout=timedelta(seconds=timeout),
            )
            control = dist.new_group(backend="gloo", timeout=_CONTROL_TIMEOUT)
        except RuntimeError as exc:
            raise GroupLost(f"data-parallel rendezvous failed: {exc}") from exc
        return cls(rank, control=control)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        """Turn a failed collective into GroupLost (the group is unusable after it)."""
        try:
            yield
        except RuntimeError as exc:  # gloo's errors (DistBackendError is one)
            self.lost = True
            raise GroupLost(f"data-parallel group lost during {what}: {exc}") from exc

    def close(self) -> None:
        """Leave the group (after ``stop`` on rank 0)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- rank 0's plans ----------------------------------------------------------------------

    def send(self, plan: Plan) -> None:
        """Rank 0: broadcast ``plan`` to the other ranks."""
        with self._collective("a plan's broadcast"):
            dist.broadcast_object_list([plan], src=0, group=self._control)

    def receive(self) -> Plan:
        """Another rank: wait for rank 0's next plan (no time limit)."""
        box: list[Any] = [None]
        with self._collective("waiting for rank 0"):
            dist.broadcast_object_list(box, src=0, group=self._control)
        plan = box[0]
        if not isinstance(plan, Plan):
            raise GroupLost(f"rank 0 sent {type(plan).__name__}, not a plan")
        return plan

    def stop(self) -> None:
        """Rank 0: release the other ranks (they exit); nothing to do in a lost group (the
        others end on their own failed collective)."""
        if not self.lost:
            with suppress(GroupLost):
                self.send(Plan())

    # -- one training step -------------------------------------------------------------------

    def objective(self, model: nn.Module, sparse: Sequence[str]) -> nn.Module:
        """``model`` wrapped in DDP for everything but the parameters named in ``sparse``
        (collective: every rank builds it at the same point)."""
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(  # type: ignore[no-untyped-call]
            model, list(sparse)
        )
        with self._collective("DistributedDataParallel's set-up"):
            return DistributedDataParallel(model, find_unused_parameters=True)

    def shard(self, rows: npt.NDArray[np.int64]) -> Shard:
        """This rank's stride of a global batch's example positions."""
        mine = rows[self.rank :: self.world]
        if len(mine) == 0:  # fewer examples than ranks: take part with a weight of zero
            return Shard(rows[:1], 0.0, 0)
        return Shard(mine, self.world * len(mine) / len(rows), len(mine))

    def reduce_sparse(self, params: Sequence[Tensor]) -> None:
        """Replace each table's sparse gradient by the ranks' mean (None stays None when no
        rank touched the table)."""
        for p in params:
            grad = p.grad
            if grad is None:
                grad = torch.sparse_coo_tensor(
                    torch.zeros((1, 0), dtype=torch.int64),
                    torch.zeros((0, *p.shape[1:]), dtype=p.dtype),
                    p.shape,
                )
            grad = grad.coalesce()
            with self._collective("a sparse gradient's all-reduce"):
                dist.all_reduce(grad)
            grad = grad.coalesce()
            p.grad = grad.div_(self.world) if grad._nnz() else None

    def reduce_sums(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (an epoch's loss records)."""
        total = torch.tensor(list(values), dtype=torch.float64)
        with self._collective("an epoch's loss records"):
            dist.all_reduce(total)
        return [float(v) for v in total]

    def check_identical(self, digest: str) -> None:
        """Diverged unless every rank's ``digest`` of its training state is the same."""
        digests: list[Any] = [None] * self.world
        with self._collective("the end-of-training check"):
            dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise Diverged(f"ranks hold different training states: {digests}")
