"""The documentation site's code runs, and its API reference covers the public API.

Every ```` ```python ```` block of every page under docs/ runs here, in order, one
namespace per page (as a reader pastes them one after another), in a temporary
directory, with matplotlib's Agg backend and JAX's default settings, as a reader runs
them: not the suite's strict promotion modes, which optax's own Adam does not pass.

The marker for code that must not run: fence it as ```` ```py ```` instead of
```` ```python ```` (the site highlights both as Python; ruff formats both). Use it only
for code that cannot run in one test process (several processes, a cluster's
addresses, files the reader has), or for lines repeated from a block above, and say so
on the page. Shell commands are ```` ```bash ````, outputs ```` ```text ````.

A page listed in ``DEVICES`` runs in a subprocess with that many virtual CPU devices.
The figures the pages show are drawn by ``docs/make_figures.py`` (the same code, run
from docs/images/); here each page only has to write every image it shows.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

import jaxnn

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
DEVICES = {"scaling-out.md": 8}
"""Pages that need several devices: run in a subprocess with this many CPU devices."""
EXTRAS = {"grain": "data", "orbax.checkpoint": "distributed"}
"""Modules of optional extras: a page that imports one is skipped without it."""


def page_code(page: str) -> str:
    """The code of a page's runnable blocks, joined."""
    return "\n".join(code for _, code in runner.python_blocks(DOCS / page))


def _load_runner():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


PROMOTION = {"jax_numpy_rank_promotion": "allow", "jax_numpy_dtype_promotion": "standard"}
"""JAX's defaults for the settings conftest.py makes strict."""


@pytest.fixture
def jax_defaults():
    """JAX's default promotion modes while a page runs, as a reader runs it."""
    before = {name: getattr(jax.config, name) for name in PROMOTION}
    for name, value in PROMOTION.items():
        jax.config.update(name, value)
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def images_shown(page: str) -> set[str]:
    """The file names of the images under images/ that a page shows."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return set(re.findall(r"\]\((?:\.\./)*images/([^)\s]+)\)", text))


@pytest.mark.parametrize("page", [p for p in PAGES if runner.python_blocks(DOCS / p)])
def test_page_code_runs(page, tmp_path, monkeypatch, jax_defaults):
    for module, extra in EXTRAS.items():
        if re.search(rf"^\s*(import|from) {re.escape(module)}\b", page_code(page), re.M):
            pytest.importorskip(module, reason=f"{page} needs the [{extra}] extra")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if page in DEVICES:
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES[page]}",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(DOCS), os.environ.get("PYTHONPATH")])),
        }
        code = (
            "import pathlib, make_figures\n"
            f"make_figures.run_page(pathlib.Path({str(DOCS / page)!r}))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-4000:]
    else:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        try:
            runner.run_page(DOCS / page)
        finally:
            plt.close("all")
    missing = sorted(name for name in images_shown(page) if not (tmp_path / name).exists())
    assert not missing, f"{page} shows images its code did not write: {missing}"


def test_every_image_shown_exists_and_is_drawn_by_a_figure_page():
    for page in PAGES:
        for name in images_shown(page):
            assert (DOCS / "images" / name).exists(), f"{page}: images/{name} is missing"
            assert page in runner.FIGURE_PAGES, (
                f"{page} shows images/{name}; add the page to FIGURE_PAGES in "
                "docs/make_figures.py so that the script draws it"
            )


def test_the_block_extractor(tmp_path):
    page = "\n".join(
        [
            "# t",
            "```python",
            "a = 1",
            "```",
            "- item",
            "",
            "  ```python",
            "  b = a + 1",
            "",
            "  c = b",
            "  ```",
            "```py",
            "not_run()",
            "```",
            "````text",
            "```python",
            "inside a text block",
            "```",
            "````",
        ]
    )
    path = tmp_path / "page.md"
    path.write_text(page)
    assert runner.python_blocks(path) == [(3, "a = 1\n"), (8, "b = a + 1\n\nc = b\n")]
    assert runner.run_page(path)["c"] == 2


def _documented() -> dict[str, set[str] | None]:
    """Each module the API reference renders (``::: module``), with its ``members``
    option (``None``: every public member)."""
    found: dict[str, set[str] | None] = {}
    for page in (DOCS / "api").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, flags=re.MULTILINE):
            members = re.search(r"members: (\[.*\]|false)", match[2])
            if members is None:
                found[match[1]] = None
            elif members[1] == "false":
                found[match[1]] = set()
            else:
                found[match[1]] = set(json.loads(re.sub(r"(\w+)", r'"\1"', members[1])))
    return found


def test_the_api_reference_covers_every_public_name():
    documented = _documented()
    missing = []
    for name in jaxnn.__all__:
        if name == "__version__":
            continue
        obj = getattr(jaxnn, name)
        if isinstance(obj, type(jaxnn)):
            if obj.__name__ not in documented:
                missing.append(f"the module {obj.__name__}")
            continue
        module = obj.__module__
        members = documented.get(module, set())
        if members is not None and name not in members:
            missing.append(f"{name} (defined in {module})")
    # Every public name of the documented subpackages too (population, train, ...).
    for package in ("jaxnn.population", "jaxnn.train", "jaxnn.layers"):
        module = sys.modules[package]
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj):
                continue  # a constant (population.STRATEGIES), shown with its module
            home = obj.__module__
            members = documented.get(home, set())
            if members is not None and name not in members:
                missing.append(f"{package}.{name} (defined in {home})")
    assert not missing, f"not in docs/api/*.md: {missing}"
