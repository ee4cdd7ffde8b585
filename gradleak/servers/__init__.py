"""Server behaviours, as specs: ``honest`` (the default), ``inconsistent:target=0``, ``imprint:bins=128``, ``trap``."""

from __future__ import annotations

from gradleak.servers.base import SERVERS, Server, ServerContext, build_server, model_digest, register

__all__ = ["SERVERS", "Server", "ServerContext", "build_server", "model_digest", "register"]

# Importing a server kind registers it.
from gradleak.servers import inconsistent  # noqa: E402,F401
from gradleak.servers import imprint  # noqa: E402,F401
from gradleak.servers import trap  # noqa: E402,F401
