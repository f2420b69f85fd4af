"""Publish message files to the saver's exchange: a way to try it end to end.

Each ``FOLDER/<topic>/*.json`` file is sent, persistent and confirmed, with the
routing key the saver binds for its topic (``save.<topic>`` by default).
"""

from __future__ import annotations

from pathlib import Path

import pika
import pika.exceptions

from brain_storm.errors import BrokerUnavailableError, UnroutableError
from brain_storm.saver.consumer import connection_parameters, describe_amqp_error
from brain_storm.saver.files import message_files
from brain_storm.urls import mask_url


def publish_folder(queue_url: str, folder: Path, *, exchange: str = "brain_storm",
                   routing_key: str = "save.{topic}", repeat: int = 1) -> int:
    """Publish the folder's messages ``repeat`` times; return how many were sent."""
    files = [(topic, path.read_bytes()) for topic, path in message_files(folder)]
    parameters = connection_parameters(queue_url, heartbeat_s=30)
    try:
        connection = pika.BlockingConnection(parameters)
    except (pika.exceptions.AMQPError, OSError) as error:
        raise BrokerUnavailableError(
            f"cannot reach RabbitMQ at {mask_url(queue_url)}: "
            f"{describe_amqp_error(error)}") from None
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=True)
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            delivery_mode=2, content_type="application/json")
        for _ in range(repeat):
            for topic, body in files:
                key = routing_key.replace("{topic}", topic)
                try:
                    # mandatory: a message that reaches no queue is an error
                    # here, not a silent drop by the broker.
                    channel.basic_publish(exchange, key, body, properties,
                                          mandatory=True)
                except pika.exceptions.UnroutableError:
                    raise UnroutableError(
                        f"no queue is bound to {key!r} on exchange {exchange!r}: "
                        "start run-saver first, which declares and binds its "
                        "queue") from None
    except pika.exceptions.AMQPError as error:
        raise BrokerUnavailableError(
            f"RabbitMQ at {mask_url(queue_url)}: {describe_amqp_error(error)}"
        ) from None
    finally:
        if connection.is_open:
            connection.close()
    return len(files) * repeat
