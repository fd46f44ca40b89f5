"""How the examples split their data over several processes (Pyro) or devices (NumPyro).

A run on ``size`` parts trains on the same data per step as a run on one: the VAE's global minibatch
(100 digits) is cut into ``size`` contiguous pieces, one per rank; the topic model's documents are
dealt out, document ``d`` to rank ``d % size``. In Pyro each rank is a process holding its piece
(``pyro_reinmax.infer.data_parallel.DataParallelLoss``); in NumPyro one process shards the arrays
over ``size`` devices under ``jit`` (``numpyro_reinmax.infer.data_parallel``). Random draws differ
per rank (:meth:`DataParallel.seed`), so that no two ranks draw the same noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SINGLE", "DataParallel"]


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Rank ``rank`` of ``size`` (NumPyro: ``size`` devices, rank 0)."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one that evaluates, reports and writes."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The seed of this rank's random draws: ``seed`` itself on one rank, else an independent
        stream per (seed, rank) pair."""
        if not self.active:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous piece of a global minibatch ``rows``."""
        return np.array_split(rows, self.size)[self.rank]

    def documents(self, num_documents: int) -> np.ndarray:
        """The documents this rank holds: ``d`` with ``d % size == rank``."""
        return np.arange(self.rank, num_documents, self.size)


SINGLE = DataParallel()
"""One process, one device."""
