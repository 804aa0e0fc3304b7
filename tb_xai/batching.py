"""The one batching helper: every method and every model call splits its rows through here.

Keeping a single place for it bounds memory the same way everywhere: a call never puts more than `batch_size`
rows through the model at once, whatever the number of probes or the per-probe sample budget. Below that bound,
the call size a method uses can be the one its model was measured fastest at (`fastest_call_size`).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Sequence

import numpy as np


def chunks(n: int, size: int) -> Iterator[slice]:
    """Yields slices covering `range(n)` in consecutive pieces of at most `size` rows."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1; received: {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def map_batches(
    fn: Callable[..., Sequence[np.ndarray]],
    arrays: Sequence[np.ndarray],
    size: int,
) -> List[np.ndarray]:
    """Applies `fn` to row-aligned slices of `arrays` and concatenates its outputs along the first axis.

    Args:
        fn: takes one slice of each array positionally and returns a sequence of arrays with as many rows.
        arrays: arrays sharing their first dimension.
        size: rows per call.

    Returns:
        One array per output of `fn`, covering all rows.

    Example:
        >>> map_batches(lambda a: [a * 2], [np.arange(5)], size=2)[0]
        array([0, 2, 4, 6, 8])
    """
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must share their first dimension; received lengths {[len(a) for a in arrays]}")
    parts: List[List[np.ndarray]] = []
    for piece in chunks(n, size):
        out = fn(*(a[piece] for a in arrays))
        parts.append([None if o is None else np.asarray(o) for o in out])
    if not parts:
        raise ValueError("map_batches needs at least one row")
    # None stays None: a method's answer for an input it does not explain (a held padding mask).
    return [None if column[0] is None else np.concatenate(column, axis=0) for column in zip(*parts)]


def call_size_ladder(largest: int, smallest: int, halvings: int) -> List[int]:
    """`largest`, then the powers of two below it, at most `halvings` of them, none below `smallest` (largest
    first; powers of two are the call shapes a backend that pads its calls compiles anyway).

    Example:
        >>> call_size_ladder(419_430, 1024, 4)
        [419430, 262144, 131072, 65536, 32768]
    """
    below = 1 << max(0, (largest - 1).bit_length() - 1)  # the largest power of two under `largest`
    ladder = [largest] + [below >> k for k in range(halvings)]
    return [s for s in ladder if s == largest or (s >= smallest and s < largest)]


def fastest_call_size(rates: Dict[int, float], largest: int, margin: float = 0.05) -> int:
    """The call size of at most `largest` rows to use, given measured `rates` (call size -> rows per second) that
    reach up to `largest`: the largest size whose rate is within `margin` of the best one (fewer calls: each also
    has its fixed costs on the host, which a rate measured on ready rows leaves out). `largest` itself where the
    rates do not reach it (nothing measured there).

    Example:
        >>> fastest_call_size({4096: 2.0, 2048: 3.1, 1024: 3.2}, 4096)
        2048
        >>> fastest_call_size({4096: 2.0, 2048: 3.0}, 8192)
        8192
    """
    sizes = [s for s in rates if s <= largest]
    if not sizes or largest > max(rates):
        return largest
    best = max(rates[s] for s in sizes)
    return max(s for s in sizes if rates[s] >= (1 - margin) * best)
