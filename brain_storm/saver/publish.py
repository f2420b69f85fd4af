"""Publish message files to the saver's exchange: a way to try it end to end.

Each ``FOLDER/<topic>/*.json`` file is sent, persistent and confirmed, with the
routing key the saver binds for its topic (``save.<topic>`` by default).
"""

from __future__ import annotations

from pathlib import Path

import pika

from brain_storm.saver.consumer import connection_parameters
from brain_storm.saver.files import message_files


def publish_folder(queue_url: str, folder: Path, *, exchange: str = "brain_storm",
                   routing_key: str = "save.{topic}", repeat: int = 1) -> int:
    """Publish the folder's messages ``repeat`` times; return how many were sent."""
    files = [(topic, path.read_bytes()) for topic, path in message_files(folder)]
    connection = pika.BlockingConnection(
        connection_parameters(queue_url, heartbeat_s=30))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=True)
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            delivery_mode=2, content_type="application/json")
        for _ in range(repeat):
            for topic, body in files:
                channel.basic_publish(
                    exchange, routing_key.replace("{topic}", topic), body, properties)
    finally:
        connection.close()
    return len(files) * repeat
