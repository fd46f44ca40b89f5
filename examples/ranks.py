"""The processes of a Pyro run on several ranks (``reinmax-compare MODEL --processes N``).

``--processes N`` starts ranks 1..N-1 as new processes (``spawn``) and runs rank 0 in the calling
process, which alone evaluates, reports and writes; the ranks join one ``torch.distributed``
process group (gloo on CPU, NCCL on GPUs, one GPU per rank). Under ``torchrun`` the processes
exist already: each reads its rank from the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``) and joins with ``env://``, on one machine or several.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from reinmax_examples.parallel import SINGLE, DataParallel

TIMEOUT = datetime.timedelta(minutes=10)
"""How long a rank waits for the others in a collective before the run fails: more than any
evaluation that rank 0 makes between two steps."""


def launched_by_torchrun() -> DataParallel | None:
    """This process's rank when ``torchrun`` (or another launcher setting ``WORLD_SIZE``) started
    it, else None."""
    if "WORLD_SIZE" not in os.environ:
        return None
    return DataParallel(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))


def _local_size(parallel: DataParallel) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", parallel.size))


def device_of_rank(device: str) -> str:
    """A GPU rank uses the GPU of its local rank (``cuda:LOCAL_RANK``)."""
    if device != "cuda":
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


def join(parallel: DataParallel, device: str, init_method: str) -> None:
    """Join the process group: gloo on CPU, NCCL on GPUs; this rank's share of the CPU's threads."""
    import torch
    from torch import distributed

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _local_size(parallel)))
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(device_of_rank(device))
    distributed.init_process_group(
        backend,
        init_method=init_method,
        rank=parallel.rank,
        world_size=parallel.size,
        timeout=TIMEOUT,
    )


def leave() -> None:
    from torch import distributed

    if distributed.is_initialized():
        distributed.destroy_process_group()


def _worker(target: Callable, rank: int, size: int, device: str, init_method: str) -> None:
    parallel = DataParallel(rank, size)
    os.environ["LOCAL_RANK"] = str(rank)
    join(parallel, device, init_method)
    try:
        target(parallel)
    finally:
        leave()


@contextlib.contextmanager
def ranks(processes: int, device: str, target: Callable) -> Iterator[DataParallel]:
    """This process's rank, in a joined process group for the block's duration.

    Under ``torchrun``: the environment's rank. Else with ``processes > 1``: ``target(parallel)``
    runs in ``processes - 1`` new processes (ranks 1..), this process is rank 0, and on leaving
    the block the other ranks are awaited; one that failed raises ``RuntimeError``. With one
    process and no launcher: :data:`SINGLE`, no process group."""
    launched = launched_by_torchrun()
    if launched is not None:
        join(launched, device, "env://")
        try:
            yield launched
        finally:
            leave()
        return
    if processes == 1:
        yield SINGLE
        return
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="reinmax-ranks-") as folder:
        init_method = (Path(folder) / "rendezvous").as_uri()
        context = mp.get_context("spawn")
        workers = [
            context.Process(
                target=_worker, args=(target, rank, processes, device, init_method), daemon=True
            )
            for rank in range(1, processes)
        ]
        for worker in workers:
            worker.start()
        os.environ["LOCAL_RANK"] = "0"
        join(DataParallel(0, processes), device, init_method)
        patience = TIMEOUT.total_seconds()
        try:
            yield DataParallel(0, processes)
        except BaseException:
            patience = 10.0  # the other ranks may wait for this one: do not wait long for them
            raise
        finally:
            leave()
            for worker in workers:
                worker.join(timeout=patience)
                if worker.is_alive():
                    worker.terminate()
        failed = [rank for rank, w in enumerate(workers, start=1) if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"rank(s) {failed} of {processes} failed; see their messages above")
