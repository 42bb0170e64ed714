"""Word count, hub and spokes: the hub splits a corpus of text files into chunks, spokes count
the words of each chunk, the hub merges the counts."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

from macp import Agent, Hub, handler

WORD = re.compile(r"[a-z']+")


def count_words(text: str) -> collections.Counter[str]:
    return collections.Counter(w.strip("'") for w in WORD.findall(text.lower()) if w.strip("'"))


class Splitter(Hub):
    """Reads every ``*.txt`` of ``body["corpus"]`` and sends ``chunk_lines`` lines at a time."""

    def decompose(self, body: Any) -> list[Any]:
        files = sorted(Path(body["corpus"]).glob("*.txt"))
        if not files:
            raise ValueError(f"no .txt files in {body['corpus']!r}")
        size = int(self.config.get("chunk_lines", 20))
        parts = []
        for file in files:
            lines = file.read_text(encoding="utf-8").splitlines()
            parts += [{"text": "\n".join(lines[i : i + size])} for i in range(0, len(lines), size)]
        self.files = len(files)
        return parts

    def merge(self, results: list[Any], body: Any) -> Any:
        total: collections.Counter[str] = collections.Counter()
        for counts in results:
            total.update(counts)
        top = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[: int(body.get("top", 10))]
        return {
            "files": self.files,
            "chunks": len(results),
            "total_words": sum(total.values()),
            "distinct_words": len(total),
            "top": [list(kv) for kv in top],
        }


class Counter(Agent):
    """Counts the words of a chunk of text."""

    capabilities = ("count",)

    @handler("count")
    def count(self, body: dict[str, str]) -> dict[str, int]:
        return dict(count_words(body["text"]))
