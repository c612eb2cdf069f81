"""The house rules of ARCHITECTURE.md, checked on the source: floors, no private
imports across modules, nothing imports the package face."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxnn"


def floors_from_architecture() -> dict[str, int]:
    """The floor of every module, read from the table in ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    floors = {}
    for match in re.finditer(r"^\| (\d+) \| ([^|]+) \|", text, re.MULTILINE):
        for name in re.findall(r"`([\w./]+)`", match.group(2)):
            floors[name.rstrip("/").replace("/", ".")] = int(match.group(1))
    return floors


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str, floors: dict[str, int]) -> int:
    """The floor of ``jaxnn.x.y``: the entry for ``x.y``, else for ``x``."""
    parts = module.split(".")[1:]
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in floors:
            return floors[name]
    raise AssertionError(f"{module} has no floor in ARCHITECTURE.md; add it to the table.")


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every jaxnn import in a file, names empty for
    ``import jaxnn.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxnn"):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jaxnn"):
                    found.append((node.lineno, alias.name, []))
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_floor():
    floors = floors_from_architecture()
    assert floors, "ARCHITECTURE.md has no floor table"
    for path in SOURCES:
        floor_of(module_name(path), floors)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_never_up_never_private_never_the_face(path):
    floors = floors_from_architecture()
    me = module_name(path)
    mine = floor_of(me, floors)
    for line, module, names in imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        targets = [module]
        if module == "jaxnn":  # `from jaxnn import data` names submodules
            for name in names:
                assert (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir(), (
                    f"{where} imports {name!r} from the package face; import it from its module"
                )
            targets = [f"jaxnn.{name}" for name in names]
        else:
            for name in names:
                assert not (name.startswith("_") and not name.startswith("__")), (
                    f"{where} imports the private name {module}.{name}; make it part of that "
                    "module's interface or move it a floor down"
                )
        for target in targets:
            theirs = floor_of(target, floors)
            assert theirs <= mine, (
                f"{where}: {me} (floor {mine}) imports {target} (floor {theirs}); a module "
                "may import only its own floor or lower ones"
            )


def test_layers_never_import_training():
    for path in (PACKAGE / "layers").glob("*.py"):
        for line, module, names in imports(path):
            targets = [module] + [f"{module}.{n}" for n in names]
            assert not any(t.startswith(("jaxnn.train", "jaxnn.population")) for t in targets), (
                f"{path.name}:{line} imports {module}"
            )
