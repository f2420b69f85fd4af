"""Message files on disk: ``FOLDER/<topic>/*.json``, one message per file."""

from __future__ import annotations

from pathlib import Path


def message_files(folder: Path) -> list[tuple[str, Path]]:
    """``(topic, path)`` of every ``<topic>/*.json`` file under ``folder``, sorted."""
    return [
        (path.parent.name, path)
        for path in sorted(folder.glob("*/*.json"))
        if path.is_file()
    ]
