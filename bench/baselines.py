"""The two baselines run-saver is measured against, each a separate process.

    raw        a pika consumer that acknowledges each message and discards it
    raw-multi  the same, acknowledging 500 messages at a time: the ceiling of
               a pika consumer that does nothing with what it gets
    naive  the common way to write a saver: auto-ack, and one upsert and
           one commit per message

Usage: python bench/baselines.py raw|raw-multi|naive AMQP_URL QUEUE COUNT [DB_URL]
Prints one JSON line: {"messages": N, "seconds": S} from the first delivery
to the last message handled.
"""

from __future__ import annotations

import json
import sys
import time

import pika


def main() -> None:
    kind, amqp_url, queue, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    state = {"n": 0, "first": 0.0}

    if kind == "raw":
        def handle(_ch, method, _properties, _body):
            channel.basic_ack(method.delivery_tag)
        auto_ack = False
    elif kind == "raw-multi":
        def handle(_ch, method, _properties, _body):
            if state["n"] % 500 == 499 or state["n"] == count - 1:
                channel.basic_ack(method.delivery_tag, multiple=True)
        auto_ack = False
    else:
        import psycopg

        database = psycopg.connect(sys.argv[5])
        database.execute(
            "CREATE TABLE IF NOT EXISTS naive_results (user_id numeric(20) NOT NULL, "
            "datetime timestamptz NOT NULL, topic text NOT NULL, data json NOT NULL, "
            "PRIMARY KEY (user_id, datetime, topic))")
        database.commit()

        def handle(_ch, method, _properties, body):
            message = json.loads(body)
            database.execute(
                "INSERT INTO naive_results VALUES (%s, timestamptz 'epoch' + "
                "%s * interval '1 millisecond', %s, %s) ON CONFLICT (user_id, "
                "datetime, topic) DO UPDATE SET data = excluded.data",
                (message["userId"], int(message["datetime"]), "pose",
                 json.dumps(message["pose"])))
            database.commit()
        auto_ack = True

    def on_message(ch, method, properties, body):
        if state["n"] == 0:
            state["first"] = time.perf_counter()
        handle(ch, method, properties, body)
        state["n"] += 1

    channel.basic_consume(queue, on_message, auto_ack=auto_ack)
    while state["n"] < count:
        connection.process_data_events(time_limit=0.5)
    seconds = time.perf_counter() - state["first"]
    print(json.dumps({"messages": state["n"], "seconds": seconds}), flush=True)
    # Stay connected until the bench has read the servers' CPU counters, which
    # die with a PostgreSQL backend when its connection closes.
    sys.stdin.readline()
    connection.close()


if __name__ == "__main__":
    main()
