"""The package face: every public name resolves, and ``import jaxnn`` leaves out what a
program that builds and trains a model does not need (issue 14: import time)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jaxnn as nn

ROOT = Path(__file__).resolve().parents[1]

FRESH = textwrap.dedent(
    """
    import sys
    import jaxnn as nn

    lazy = ["jaxnn.population", "jaxnn.benchmark", "jaxnn.export", "jaxnn.sources"]
    extras = ["orbax", "grain", "tensorboardX", "matplotlib", "chex", "scipy", "evosax"]
    print(sorted(m for m in sys.modules if m in lazy + extras or m.split(".")[0] in extras))
    assert nn.ArrayStream is sys.modules["jaxnn.sources"].ArrayStream
    assert nn.population.fit is sys.modules["jaxnn.population"].fit
    print(sorted(m for m in lazy if m in sys.modules))
    """
)


def test_import_leaves_out_rarely_used_parts_and_loads_them_on_first_use():
    out = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.splitlines()
    assert before == "[]", f"import jaxnn imported {before}"
    assert after == "['jaxnn.population', 'jaxnn.sources']"


def test_every_public_name_resolves_and_is_listed():
    missing = [name for name in nn.__all__ if not hasattr(nn, name)]
    assert not missing
    assert set(nn.__all__) <= set(dir(nn))
    assert nn.sources.ArrayStream is nn.ArrayStream
    with pytest.raises(AttributeError, match=r"module 'jaxnn' has no attribute 'Dence'"):
        _ = nn.Dence
