"""Operators' view of tickwork's RabbitMQ queues, and changing their type safely.

RabbitMQ fixes a queue's type when it is declared: redeclaring it with other arguments is
PRECONDITION_FAILED. :func:`migrate` therefore rebuilds each queue: its messages are
moved to a holding queue (each one acked only after RabbitMQ confirmed its copy), the
queue is deleted (only if still empty and unused), declared again with the new type, and
the messages are moved back. An interrupted migration is resumed by running it again: a
holding queue left behind is emptied into its queue first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tickwork import queues
from tickwork.errors import TickworkError
from tickwork.rabbitmq import (
    AT_LEAST_ONCE_SINCE,
    QueueType,
    connect,
    queue_arguments,
    server_version,
)

logger = logging.getLogger(__name__)

HOLDING_SUFFIX = ".migrating"
CONNECT_TIMEOUT_S = 10.0


class QueueAdminError(TickworkError):
    """A queue operation refused, with what to do about it."""


@dataclass(frozen=True)
class QueueInfo:
    name: str
    exists: bool
    type: str  # classic, quorum, ... or "?" (unknown without the management API)
    messages: int  # ready + unacked (management API) or ready only (AMQP)
    consumers: int
    leader: str  # the node leading a quorum queue, or holding a classic one; "?" unknown


def _vhost(broker_url: str) -> str:
    path = urlsplit(broker_url.split(",")[0]).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def list_queues(settings: Any) -> list[QueueInfo]:
    """Every queue tickwork declares (prefixed), in order; missing ones too."""
    names = queues.physical_names(settings.queue_prefix)
    if settings.rabbitmq_management_url:
        return _list_from_management(settings, names)
    return _list_from_amqp(settings, names)


def _list_from_management(settings: Any, names: list[str]) -> list[QueueInfo]:
    import httpx

    parts = urlsplit(settings.rabbitmq_management_url)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    vhost = quote(_vhost(settings.broker_url or ""), safe="")
    response = httpx.get(
        f"{base}{parts.path.rstrip('/')}/api/queues/{vhost}",
        params={"columns": "name,type,leader,node,messages,consumers"},
        auth=auth,
        timeout=CONNECT_TIMEOUT_S,
    )
    if response.status_code != 200:
        raise QueueAdminError(
            f"TICKWORK_RABBITMQ_MANAGEMENT_URL: the management API answered "
            f"{response.status_code} for {base}/api/queues"
        )
    found = {item["name"]: item for item in response.json() if isinstance(item, dict)}
    out = []
    for name in names:
        item = found.get(name)
        if item is None:
            out.append(QueueInfo(name, False, "-", 0, 0, "-"))
            continue
        out.append(
            QueueInfo(
                name=name,
                exists=True,
                type=str(item.get("type") or "classic"),
                messages=int(item.get("messages") or 0),
                consumers=int(item.get("consumers") or 0),
                leader=str(item.get("leader") or item.get("node") or "?"),
            )
        )
    return out


def _list_from_amqp(settings: Any, names: list[str]) -> list[QueueInfo]:
    from pika.exceptions import ChannelClosedByBroker

    connection = connect(settings.broker_urls, timeout_s=CONNECT_TIMEOUT_S)
    try:
        channel = connection.channel()
        out = []
        for name in names:
            try:
                method = channel.queue_declare(name, passive=True).method
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()
                out.append(QueueInfo(name, False, "-", 0, 0, "-"))
                continue
            out.append(
                QueueInfo(
                    name, True, "?", int(method.message_count), int(method.consumer_count), "?"
                )
            )
        return out
    finally:
        connection.close()


# --- migration ------------------------------------------------------------------------


@dataclass
class MigrationReport:
    queue: str
    moved: int = 0
    already: bool = False
    missing: bool = False


def migrate(
    settings: Any,
    to: QueueType,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> list[MigrationReport]:
    """Rebuild every tickwork queue as a ``to`` queue, keeping every message.

    Refuses (changing nothing) while a queue has consumers: stop the workers first.
    Producers should be stopped too; one that publishes while its queue is being rebuilt
    gets an error (no route), not a lost message."""
    from pika.exceptions import ChannelClosedByBroker

    connection = connect(settings.broker_urls, timeout_s=CONNECT_TIMEOUT_S)
    reports = []
    try:
        at_least_once = server_version(connection) >= AT_LEAST_ONCE_SINCE
        channel = connection.channel()
        channel.confirm_delivery()
        names = queues.physical_names(settings.queue_prefix)
        # First, nothing may consume (a worker would take messages mid-move).
        for name in names:
            try:
                consumers = channel.queue_declare(name, passive=True).method.consumer_count
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = _confirming(connection)
                continue
            if consumers:
                raise QueueAdminError(
                    f"queue {name!r} has {consumers} consumer(s): stop the workers (and the "
                    "scheduler) before migrating; nothing was changed"
                )
        # The dead-letter queues first: the others dead-letter into them.
        order = sorted(names, key=lambda n: (not n.endswith(".XQ"), not n.endswith(".DQ")))
        for name in order:
            arguments = queue_arguments(
                name, to, settings.queue_delivery_limit, at_least_once=at_least_once
            )
            report, channel = _migrate_one(connection, channel, name, arguments, to, progress)
            reports.append(report)
        return reports
    finally:
        if connection.is_open:
            connection.close()


def _confirming(connection: Any) -> Any:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _exists(connection: Any, channel: Any, name: str) -> tuple[bool, Any]:
    from pika.exceptions import ChannelClosedByBroker

    try:
        channel.queue_declare(name, passive=True)
        return True, channel
    except ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        return False, _confirming(connection)


def _migrate_one(
    connection: Any,
    channel: Any,
    name: str,
    arguments: dict[str, Any],
    to: QueueType,
    progress: Callable[[str], None],
) -> tuple[MigrationReport, Any]:
    from pika.exceptions import ChannelClosedByBroker

    report = MigrationReport(name)
    holding = name + HOLDING_SUFFIX
    exists, channel = _exists(connection, channel, name)
    held, channel = _exists(connection, channel, holding)
    if exists:
        try:  # same arguments: already of the new type
            channel.queue_declare(name, durable=True, arguments=arguments)
            report.already = True
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            channel = _confirming(connection)
    if not exists and not held:
        report.missing = True  # declared by the first process that uses it
        return report, channel
    if not report.already:
        channel.queue_declare(holding, durable=True)
        if exists:
            report.moved = _move(channel, name, holding)
            progress(f"{name}: {report.moved} message(s) moved to {holding}")
            _delete_if_idle(channel, name, holding, source_is_quorum=to == "classic")
        channel.queue_declare(name, durable=True, arguments=arguments)
        # A new channel: RabbitMQ 3.10's channel remembers the deleted queue's type and
        # crashes (INTERNAL_ERROR) publishing to its namesake of another type.
        channel.close()
        channel = _confirming(connection)
    moved_back = 0
    if held or not report.already:
        moved_back = _move(channel, holding, name)
        channel.queue_delete(holding, if_empty=True)
        progress(f"{name}: {moved_back} message(s) in the rebuilt queue")
    report.moved = max(report.moved, moved_back)
    return report, channel


def _delete_if_idle(channel: Any, name: str, holding: str, *, source_is_quorum: bool) -> None:
    """Delete the emptied queue ``name`` only if nothing arrived or started consuming
    meanwhile. Classic queues check that atomically (if-unused, if-empty); quorum queues
    refuse those flags (NOT_IMPLEMENTED): there a check just before must do."""
    from pika.exceptions import ChannelClosedByBroker

    def busy(detail: str) -> QueueAdminError:
        return QueueAdminError(
            f"queue {name!r} could not be deleted ({detail}): a consumer or a new message "
            f"arrived; its messages are safe in {holding!r}. Stop every tickwork process "
            "and run the migration again."
        )

    if source_is_quorum:
        method = channel.queue_declare(name, passive=True).method
        if method.message_count or method.consumer_count:
            raise busy(f"{method.message_count} message(s), {method.consumer_count} consumer(s)")
        channel.queue_delete(name)
        return
    try:
        channel.queue_delete(name, if_unused=True, if_empty=True)
    except ChannelClosedByBroker as exc:
        raise busy(str(exc.reply_text)) from None


def _move(channel: Any, source: str, target: str) -> int:
    """Every message of ``source`` to ``target``, body and properties unchanged: each is
    acked from ``source`` only after RabbitMQ confirmed its copy in ``target``."""
    moved = 0
    while True:
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            return moved
        channel.basic_publish("", target, body, properties, mandatory=True)  # confirmed
        channel.basic_ack(method.delivery_tag)
        moved += 1
