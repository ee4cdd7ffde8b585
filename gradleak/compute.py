"""The CPU numeric path of a run: intra-op threads and the oneDNN convolution backend, chosen explicitly.

Both are process-wide torch settings, and both change results in the last bits: oneDNN and
ATen's own convolutions sum in different orders, and so do one and several threads. So they
belong to whoever owns the process: the ``gradleak`` command (``--threads``, ``--onednn``) and
the runner's worker processes apply a :class:`Compute`; library code never changes them and
never picks kernels by timing, so a seeded run gives the same numbers whatever the machine's
load. Each result record carries :meth:`Compute.record` of the settings it ran under.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from gradleak.errors import GradleakError


@dataclass(frozen=True)
class Compute:
    threads: int = 1  # intra-op threads; one LeNet-Zhu evaluation is too small to share between threads
    onednn: bool = True  # torch's own default CPU backend (oneDNN convolutions where torch has it)

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise GradleakError(f"threads must be a whole number of at least 1, not {self.threads!r}")

    @classmethod
    def current(cls) -> Compute:
        """The settings this process runs under now."""
        return cls(threads=torch.get_num_threads(), onednn=bool(torch.backends.mkldnn.enabled))

    def apply(self) -> None:
        """Set this process's torch threads and backend; only for process owners (CLI, runner workers)."""
        torch.set_num_threads(self.threads)
        torch.backends.mkldnn.enabled = self.onednn

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """:meth:`apply`, then restore the previous settings (a CLI call inside a test or notebook)."""
        previous = Compute.current()
        self.apply()
        try:
            yield
        finally:
            previous.apply()

    def record(self) -> dict[str, Any]:
        """What a result record stores about its numeric path."""
        return {"threads": self.threads, "onednn": self.onednn, "torch": torch.__version__}


def parse_switch(value: str) -> bool:
    """``on`` / ``off`` (as ``--onednn`` takes them) to a bool."""
    choices = {"on": True, "off": False}
    if value not in choices:
        raise GradleakError(f"--onednn takes on or off, not {value!r}")
    return choices[value]
