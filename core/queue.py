"""RabbitMQ access: one durable jobs queue (plus its dead-letter queue) carrying job ids only."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from core.errors import QueueUnavailable

PUBLISH_TIMEOUT_S = 5.0


async def connect(amqp_url: str) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself after a broker restart.

    Raises:
        aio_pika.exceptions.AMQPConnectionError: the broker is not reachable now.
    """
    return await aio_pika.connect_robust(amqp_url, timeout=10)


async def publisher_channel(connection: AbstractRobustConnection) -> AbstractChannel:
    """A channel for publishing: publisher confirms on, and an unroutable message raises.

    A service makes one at start-up and publishes on it until shutdown: the channel of a
    robust connection opens again by itself after a broker restart.
    """
    return await connection.channel(publisher_confirms=True, on_return_raises=True)


async def declare(channel: AbstractChannel, queue_name: str) -> AbstractQueue:
    """Declare the durable jobs queue and its dead-letter queue ``<name>.dead``.

    A message the dispatcher cannot decode is rejected without requeue and lands in
    the dead-letter queue instead of looping.
    """
    dead = dead_letter_queue(queue_name)
    await channel.declare_queue(dead, durable=True)
    return await channel.declare_queue(
        queue_name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )


async def ready_count(channel: AbstractChannel, queue_name: str) -> int:
    """How many messages ``queue_name`` holds ready for delivery, asked of the broker now.

    (A robust channel answers a passive ``declare_queue`` of a queue it declared before from
    its cache, with the count of that first declaration; this asks the broker every time.)
    """
    return (await queue_stats(channel, queue_name))[0]


async def queue_stats(channel: AbstractChannel, queue_name: str) -> tuple[int, int]:
    """``(messages ready, consumers)`` of ``queue_name``, asked of the broker now (a passive
    declare: no management plugin needed).

    Raises:
        aio_pika/aiormq errors: the queue does not exist or the broker is unreachable.
    """
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue_name, passive=True)
    return declared.message_count, declared.consumer_count


def dead_letter_queue(queue_name: str) -> str:
    """The name of ``queue_name``'s dead-letter queue."""
    return f"{queue_name}.dead"


async def publish_job(channel: AbstractChannel, queue_name: str, job_id: uuid.UUID) -> None:
    """Publish a job id, persistent, and wait for the broker's confirm.

    ``channel`` should come from :func:`publisher_channel`.

    Raises:
        QueueUnavailable: the broker refused, did not route, or did not confirm in time.
    """
    message = aio_pika.Message(
        body=str(job_id).encode(),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="text/plain",
        message_id=str(job_id),
    )
    try:
        await asyncio.wait_for(
            channel.default_exchange.publish(message, routing_key=queue_name, mandatory=True),
            timeout=PUBLISH_TIMEOUT_S,
        )
    except Exception as error:  # any failure means: not confirmed
        raise QueueUnavailable(
            f"the job queue did not accept the job ({type(error).__name__}: {error}); nothing was stored, try again"
        ) from error
