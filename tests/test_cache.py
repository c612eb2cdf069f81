"""The persistent compilation cache switch: a second process loads, not compiles."""

import json
import subprocess
import sys

import pytest

import jaxnn as nn

SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
import jaxnn as nn
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
where = nn.enable_compilation_cache(sys.argv[1])
trainer = nn.Trainer(nn.Sequential(nn.Dense(8, "relu"), nn.Dense(1)), "mse", "adam")
x = jnp.ones((16, 3)); y = jnp.zeros((16, 1))
state = trainer.init(jax.random.key(0), x)
trainer.train_step(state, x, y)
print(json.dumps({"dir": str(where), "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def run(cache_dir):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_compiled_programs(tmp_path):
    cache_dir = tmp_path / "nested" / "cache"
    first = run(cache_dir)
    assert first["dir"] == str(cache_dir.resolve())
    assert first["misses"] > 0 and first["hits"] == 0
    assert any(cache_dir.iterdir()), "nothing was written to the cache"
    second = run(cache_dir)
    assert second["hits"] >= first["misses"] and second["misses"] == 0


@pytest.mark.parametrize("bad", [-1.0, "0", True, None])
def test_rejects_a_bad_minimum_compile_time(tmp_path, bad):
    with pytest.raises(ValueError, match=r"min_compile_time_secs must be a number >= 0"):
        nn.enable_compilation_cache(tmp_path, min_compile_time_secs=bad)
