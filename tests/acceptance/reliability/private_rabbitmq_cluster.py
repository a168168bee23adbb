"""Three private RabbitMQ nodes joined into one cluster, for the high-availability tests.

Each node is a :class:`PrivateRabbitMQ` (own node name, AMQP and distribution ports,
data and log folders). They share the Erlang cookie of the ``rabbitmq`` user (every node
runs as that user, with its HOME), which is what ``rabbitmqctl join_cluster`` needs. The
shared broker on 5672 is never part of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.acceptance.reliability.private_rabbitmq import PrivateRabbitMQ
from tests.conftest import free_port, service_unavailable

QUEUE_COLUMNS = ("name", "type", "leader", "members", "messages", "consumers")


@dataclass(frozen=True)
class QueueRow:
    name: str
    type: str
    leader: str
    members: str
    messages: int
    consumers: int


class PrivateRabbitMQCluster:
    """Three nodes in one cluster; a node can be stopped (``stop_app``) and started."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateRabbitMQ() for _ in range(size)]
        self.stopped: set[str] = set()
        # The management API on the first node (it answers for the whole cluster, from
        # the statistics each node's agent sends).
        first = self.nodes[0]
        self.management_port = free_port()
        conf = first.dir / "rabbitmq.conf"
        conf.write_text(
            conf.read_text()
            + f"management.tcp.port = {self.management_port}\nmanagement.tcp.ip = 127.0.0.1\n"
            "collect_statistics_interval = 1000\n"
        )
        (first.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        for node in self.nodes[1:]:  # each node reports its queues' statistics
            (node.dir / "enabled_plugins").write_text("[rabbitmq_management_agent].\n")
            conf = node.dir / "rabbitmq.conf"
            conf.write_text(conf.read_text() + "collect_statistics_interval = 1000\n")

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}/"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """``TICKWORK_BROKER_URL`` for the whole cluster."""
        return ",".join(self.urls)

    def start(self) -> None:
        """Boot the nodes side by side, then join the others to the first (about a
        minute in all on a busy 2-core machine, most of it Erlang booting)."""
        from concurrent.futures import ThreadPoolExecutor

        first = self.nodes[0]

        def join(node: PrivateRabbitMQ) -> None:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
            node.ctl("await_startup", "--timeout", "60", timeout_s=90)

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(PrivateRabbitMQ.start, self.nodes))
            list(pool.map(join, self.nodes[1:]))

    def node(self, name: str) -> PrivateRabbitMQ:
        return next(n for n in self.nodes if n.node == name)

    def running(self) -> PrivateRabbitMQ:
        return next(n for n in self.nodes if n.node not in self.stopped)

    def stop_node(self, node: PrivateRabbitMQ) -> None:
        node.stop_app()
        self.stopped.add(node.node)

    def start_node(self, node: PrivateRabbitMQ) -> None:
        node.start_app()
        self.stopped.discard(node.node)

    def queues(self) -> dict[str, QueueRow]:
        """Every queue of the cluster, asked of a running node."""
        out = self.running().ctl("list_queues", "-q", "--formatter", "json", *QUEUE_COLUMNS)
        import json

        rows: dict[str, QueueRow] = {}
        for item in json.loads(out or "[]"):
            members = item.get("members") or []
            rows[item["name"]] = QueueRow(
                name=item["name"],
                type=str(item.get("type", "")),
                leader=str(item.get("leader") or ""),
                members=",".join(members) if isinstance(members, list) else str(members),
                messages=int(item.get("messages") or 0),
                consumers=int(item.get("consumers") or 0),
            )
        return rows

    def leader_of(self, queue: str) -> PrivateRabbitMQ:
        return self.node(self.queues()[queue].leader)

    def stop(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(PrivateRabbitMQ.stop, self.nodes))


@contextmanager
def private_rabbitmq_cluster(size: int = 3) -> Iterator[PrivateRabbitMQCluster]:
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        service_unavailable("rabbitmq-server (to start a private RabbitMQ cluster)")
    cluster = PrivateRabbitMQCluster(size)
    try:
        try:
            cluster.start()
        except Exception as exc:
            service_unavailable(f"a private {size}-node RabbitMQ cluster ({exc})")
        yield cluster
    finally:
        cluster.stop()
