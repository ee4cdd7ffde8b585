"""A Flower ``Grid`` whose network is a loop over the nodes' ``ClientApp`` in this process.

Flower's own server logic (a Strategy's ``start``, the SecAgg+ workflow) drives it unchanged;
each message is deep-copied on delivery, as a wire would, so a ``ClientApp`` never shares
objects with the server. No sockets, no SuperLink, no Ray: for tests and small experiments.
"""

from __future__ import annotations

import copy
from typing import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 0


class InProcessGrid(Grid):
    """``num_nodes`` nodes running ``app``; node ``k`` (0-based) has id :meth:`node_id` ``(k)``."""

    def __init__(self, app: ClientApp, num_nodes: int) -> None:
        # What Flower's runtime sets for the ServerApp process before it builds messages.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, SUPERLINK_NODE_ID, 1
        self.app = app
        self.node_ids = [self.node_id(k) for k in range(num_nodes)]
        self.contexts = {
            nid: Context(run_id=RUN_ID, node_id=nid, node_config={"partition-id": k}, state=RecordDict(), run_config={})
            for k, nid in enumerate(self.node_ids)
        }
        self._run = Run.create_empty(RUN_ID)  # Flower's DefaultWorkflow registers nodes under the grid's run

    @staticmethod
    def node_id(k: int) -> int:
        return SUPERLINK_NODE_ID + 1 + k

    @staticmethod
    def partition(node_id: int) -> int:
        """The 0-based index of a node (its data partition)."""
        return node_id - SUPERLINK_NODE_ID - 1

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("this grid delivers through send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[str]:
        raise NotImplementedError("this grid delivers through send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return [self.app(copy.deepcopy(m), self.contexts[m.metadata.dst_node_id]) for m in messages]
