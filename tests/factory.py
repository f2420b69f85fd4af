"""Realistic brain_storm messages, as parsers publish them, for tests and benchmarks."""

from __future__ import annotations

import json
import random
from typing import Any

TOPICS = ("pose", "feelings", "color_image", "depth_image")
BASE_MS = 1_575_446_887_339


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def result_for(topic: str, rng: random.Random, user_id: int, ms: int) -> dict:
    if topic == "pose":
        return {
            "translation": {axis: rng.uniform(-2, 2) for axis in "xyz"},
            "rotation": {axis: rng.uniform(-1, 1) for axis in "xyzw"},
        }
    if topic == "feelings":
        feelings = {
            name: rng.choice([0.0, round(rng.uniform(-1, 1), 6)])
            for name in ("hunger", "thirst", "exhaustion", "happiness")
        }
        # proto3 JSON omits fields at their default value.
        return {name: value for name, value in feelings.items() if value != 0.0}
    kind = topic.split("_")[0]
    return {
        "path": f"/var/lib/brain_storm/{user_id}/{ms}/{topic}.bin",
        "width": 1920 if kind == "color" else 224,
        "height": 1080 if kind == "color" else 172,
        "kind": kind,
    }


def message(topic: str, user_id: int, ms: int, result: Any, *, nested: bool,
            username: str | None = None) -> dict:
    key = _camel(topic)
    if nested:
        user: dict[str, Any] = {"userId": str(user_id)}
        if username is not None:
            user["username"] = username
        return {"user": user, "snapshot": {"datetime": str(ms)},
                "result": {key: result}}
    return {"userId": str(user_id), "datetime": str(ms), key: result}


def realistic(count: int, *, seed: int = 0, users: int = 7) -> list[tuple[str, bytes]]:
    """``count`` messages of every topic, half flat and half nested, plus users.

    Every (user, snapshot, topic) appears once, so the expected rows are known.
    """
    rng = random.Random(seed)
    user_ids = [rng.choice([1, 42, 2**63, 2**64 - 1, rng.randrange(2**64)])
                for _ in range(users)]
    user_ids = sorted(set(user_ids))
    items: list[tuple[str, bytes]] = []
    for user_id in user_ids:
        items.append(("user", json.dumps({
            "userId": str(user_id), "username": f"user-{user_id}",
            "birthday": rng.randrange(0, 10**9), "gender": rng.choice(
                ["MALE", "FEMALE", "OTHER", 0, 1, 2]),
        }).encode()))
    index = 0
    while len(items) < count:
        user_id = user_ids[index % len(user_ids)]
        ms = BASE_MS + index * 37
        for topic in TOPICS:
            if len(items) >= count:
                break
            body = message(topic, user_id, ms, result_for(topic, rng, user_id, ms),
                           nested=rng.random() < 0.5)
            items.append((topic, json.dumps(body).encode()))
        index += 1
    return items
