"""The one exception type for mistakes a user can make.

Everything a user can get wrong (a bad spec, a missing data root, a malformed update, a
model that cannot be differentiated twice) raises :class:`GradleakError` with a message
that says what is wrong and what to do. The CLI prints it on one line and exits 2.
"""


class GradleakError(Exception):
    """A user-facing error: the message names the problem and the fix."""


class RoundStopped(GradleakError):
    """A defense stopped the round before the server saw an update (clients refused the model,
    or secure aggregation aborted): for an experiment an outcome, recorded as such."""
