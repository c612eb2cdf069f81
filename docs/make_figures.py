"""Draws the documentation's figures by running the pages that show them.

The figures under docs/images/ are not drawn by a separate script: each is
saved by a code block of its page (``fig.savefig("activations.png")``). This
script runs those pages' ```` ```python ```` blocks in order, in one namespace
per page, from docs/images/, so every PNG a page shows is the one its own code
makes. Run it after changing such a page, and commit the PNGs:

    python docs/make_figures.py

``tests/test_docs.py`` runs every page's code the same way (with
:func:`run_page`), in a temporary directory, so the code cannot rot; it does
not compare the images.
"""

from __future__ import annotations

import os
import pathlib
import re
import time
from typing import Any

DOCS = pathlib.Path(__file__).resolve().parent
IMAGES = DOCS / "images"
FIGURE_PAGES = ["how-networks-learn.md"]
"""The pages whose code saves figures."""

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<ticks>`{3,})(?P<info>[^`]*)$")


def python_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
    """The ```` ```python ```` blocks of a Markdown file: ``(line, code)``.

    ``line`` is the 1-based line of the block's first line of code. A block may
    be indented (inside a list item); its code is dedented by its fence's
    indent. Blocks tagged otherwise (``py``, ``bash``, ``text``, ...) are left
    out: ``py`` is how a page shows Python that must not run here (several
    processes, files the reader has).
    """
    blocks: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks = len(fence["indent"]), fence["ticks"]
        tag = fence["info"].strip().split(" ")[0]
        start, i = i + 1, i + 1
        while i < len(lines) and lines[i].strip() != ticks:
            i += 1
        if tag == "python":
            code = "\n".join(line[indent:] for line in lines[start:i])
            blocks.append((start + 1, code + "\n"))
        i += 1
    return blocks


def run_page(
    path: pathlib.Path, namespace: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Runs the ```` ```python ```` blocks of a page in order, in one namespace.

    Each block is compiled under the page's file name and line numbers, so a
    traceback points at the line of the page that failed.

    Returns:
        The namespace after the last block.
    """
    namespace = {"__name__": "__docs__"} if namespace is None else namespace
    for line, code in python_blocks(path):
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
    return namespace


def main() -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(exist_ok=True)
    os.chdir(IMAGES)
    for name in FIGURE_PAGES:
        start = time.time()
        run_page(DOCS / name)
        plt.close("all")
        drawn = sorted(
            p.name for p in IMAGES.glob("*.png") if p.stat().st_mtime >= start
        )
        print(f"{name}: drew {', '.join(drawn) or 'nothing'} in {IMAGES}")


if __name__ == "__main__":
    main()
