"""gradleak: show, measure and stop gradient leakage in federated learning.

The pipeline (see docs/architecture.md)::

    data -> model -> clients compute updates -> defenses -> ServerView -> attack -> metrics -> report

The victim side produces a :class:`~gradleak.threat.ServerView` and keeps the
:class:`~gradleak.threat.Truth` apart; attacks only ever receive the view.
"""

__version__ = "0.1.0"
