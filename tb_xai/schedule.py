"""Which epochs the callback logs: every `every_n_epochs`-th, and, under an overhead budget, only as many as the
budget pays for.

The budget (`max_overhead`, a fraction of the training epochs' CPU time) spaces logged epochs on a stride of
`every_n_epochs` times a power of two: the smallest stride at which one logged step, priced at the last warm
step's CPU time, costs at most the budget's share of the epochs between two of them. Logged epochs are
multiples of the stride, so two runs of one configuration log the same epochs, and a run whose steps cost
more logs a subset of a cheaper run's (what `tb_xai.compare` aligns on). On top of the stride, a credit keeps
each fit within its budget: it gains the budget's share of every epoch and pays for every warm step, and a
scheduled epoch is logged only if, after its step, the epochs left in the fit still pay for the last one's.

The first and the last epoch of each fit are always logged. What nothing can save is not charged: the
callback's setup, and its first logged step, which traces the methods (it is priced by the next scheduled
epoch, which is logged too).

The clock is the caller's: everything here takes seconds it measured, so the rules are tested without one.
"""

from __future__ import annotations

import collections
import statistics
from typing import List, Optional

#: How many of the latest epochs the typical epoch's CPU time is the median of.
EPOCH_WINDOW = 16


class Schedule:
    """The logging schedule of one callback, over every fit it is given to.

    Call `start_fit` at each fit's start, `epoch_ended` with each epoch's CPU seconds, ask `should_log` at each
    epoch's end, and report each logged step's CPU seconds with `step_logged`.
    """

    def __init__(self, every_n_epochs: int, max_overhead: Optional[float]):
        self.every_n_epochs = every_n_epochs
        self.max_overhead = max_overhead
        self.price: Optional[float] = None  # CPU seconds of the last warm logged step (the next one's price)
        self._steps = 0  # logged steps over every fit
        self._epochs = collections.deque(maxlen=EPOCH_WINDOW)  # the latest epochs' CPU seconds
        self.start_fit()

    def start_fit(self) -> None:
        self.credit = 0.0  # CPU seconds this fit's budget still allows
        self.skipped: List[int] = []  # scheduled epochs skipped since the last logged step
        self._fit_logged = False

    def epoch_ended(self, seconds: float) -> None:
        self._epochs.append(seconds)
        if self.max_overhead is not None:
            self.credit += self.max_overhead * seconds

    def typical_epoch(self) -> float:
        """The median CPU seconds of the latest epochs (0 before any)."""
        return statistics.median(self._epochs) if self._epochs else 0.0

    def stride(self) -> int:
        """Logged epochs are multiples of this: `every_n_epochs` times the smallest power of two at which a step
        at `price` costs at most `max_overhead` of the epochs between two steps."""
        stride = self.every_n_epochs
        if self.max_overhead is None or self.price is None:
            return stride
        allowed = self.max_overhead * self.typical_epoch()
        if allowed <= 0:
            return stride
        while self.price > allowed * stride and stride < 2 ** 30:
            stride *= 2
        return stride

    def should_log(self, epoch: int, last: bool, epochs_left: int = 0) -> bool:
        """Whether to log `epoch` (its epoch has ended); a scheduled epoch that is not logged is counted in
        `skipped`. `last`: the fit's last epoch; `epochs_left`: the fit's epochs after this one (0 if unknown)."""
        if epoch % self.every_n_epochs != 0 and not last:
            return False
        if self.max_overhead is None or not self._fit_logged or last or self.price is None:
            return True
        if epoch % self.stride() == 0:
            # After this step, the epochs left must still pay for the last epoch's.
            future = self.max_overhead * epochs_left * self.typical_epoch()
            if self.credit - self.price + future >= self.price:
                return True
        self.skipped.append(epoch)
        return False

    def step_logged(self, seconds: float) -> None:
        """A logged step took `seconds` of CPU time (a setup inside it left out)."""
        if self._steps:  # the first step traces the methods: it prices nothing and is not charged
            self.price = seconds
            self.credit -= seconds
        self._steps += 1
        self._fit_logged = True
        self.skipped = []
