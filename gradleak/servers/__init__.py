"""Server behaviours, as specs: ``honest`` (the default), ``inconsistent:target=0``, ``imprint:bins=128``, ``trap``."""

from __future__ import annotations

from gradleak.registry import discover
from gradleak.servers.base import SERVERS, Server, ServerContext, build_server, model_digest, register

__all__ = ["SERVERS", "Server", "ServerContext", "build_server", "model_digest", "register"]

# Every module here registers what it defines by being imported.
discover(__name__, __path__)
