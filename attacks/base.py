"""What an attack is: a config of paper defaults and ``reconstruct(view) -> Reconstruction``."""

from __future__ import annotations

from typing import Any, ClassVar

from gradleak.threat import Reconstruction, ServerView


class Attack:
    """Subclasses set ``name`` and ``Config`` (a dataclass whose defaults cite the paper).

    ``reconstruct`` receives only the :class:`ServerView`; the truth never reaches an attack.
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def reconstruct(self, view: ServerView) -> Reconstruction:
        raise NotImplementedError
