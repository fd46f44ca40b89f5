"""Interleaved timing: every method runs once per round, in a shuffled order, and each method's
time is the median over rounds. Machine noise then hits all methods alike, and ratios between
methods measured in one run are meaningful. The fastest round is kept as well: noise only ever
adds time, so it is the closest measure of the work itself (``timeit``'s reasoning). On a shared
machine neither is steady at large sizes (both moved by up to half between runs on the 2-core
machine here), so the docs show both."""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

WARM_UP_SECONDS = 0.05
"""Each method runs this long before the rounds (after a first call, which may compile): a
method timed first in a run otherwise meets a cold allocator and a slower clock."""


@dataclass(frozen=True)
class InSetting:
    """A method timed in a setting (the kernels switched off, say): ``setting()`` is entered
    around its warm-up and around each of its measurements, so that switching costs no time in
    the measured calls."""

    call: Callable[[], object]
    setting: Callable[[], AbstractContextManager]


def calls_per_measurement(fn: Callable[[], object], target_seconds: float = 0.005) -> int:
    """How many back-to-back calls make one measurement last about ``target_seconds``."""
    start = time.perf_counter()
    fn()
    single = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10_000, int(target_seconds / single)))


def interleaved_medians(
    methods: dict[str, Callable[[], object] | InSetting], rounds: int = 9, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Median, quartiles and fastest round (seconds per call) of each method over interleaved
    rounds.

    Each callable must block until its work is done (synchronise CUDA, ``block_until_ready``);
    an :class:`InSetting` method runs in its setting.
    """
    timed = {
        name: m if isinstance(m, InSetting) else InSetting(m, contextlib.nullcontext)
        for name, m in methods.items()
    }
    repeats = {}
    for name, method in timed.items():  # warm-up: compilation, allocator, caches, clock speed
        fn = method.call
        with method.setting():
            fn()
            start = time.perf_counter()
            while time.perf_counter() - start < WARM_UP_SECONDS:
                fn()
            repeats[name] = calls_per_measurement(fn)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    order = list(methods)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn, n = timed[name].call, repeats[name]
            with timed[name].setting():
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - start) / n)
    result = {}
    for name, values in samples.items():
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        result[name] = {
            "median_s": median,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": min(values),
            "calls": repeats[name],
        }
    return result
