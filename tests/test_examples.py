"""The learning claims the examples make, checked from fixed seeds."""

import contextlib
import importlib.util
import pathlib

import jax
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


# Examples whose programs run long enough for XLA's full optimisation to pay for its
# compile time (conftest.py turns most of it off); the others run faster without it.
OPTIMISED = {"sequence_rnn", "evolution_strategy"}


@contextlib.contextmanager
def full_optimisation(on: bool):
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", before and not on)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_breast_cancer_reaches_its_stated_test_accuracy(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    example = load("breast_cancer")
    accuracy = example.main(quick=False)
    assert accuracy >= example.TARGET
    assert (tmp_path / "breast_cancer.png").stat().st_size > 0


@pytest.mark.parametrize(
    "name", ["sequence_rnn", "transformer", "evolution_strategy", "custom_layer"]
)
def test_example_reaches_its_stated_accuracy(name, capsys):
    """The full runs (seconds each): the GRU's parity, the transformer's sorting,
    the evolution strategy's classification without gradients, the hand-written
    layers' two moons."""
    example = load(name)
    with full_optimisation(name in OPTIMISED):
        accuracy = example.main(quick=False)
    assert accuracy >= example.TARGET, capsys.readouterr().out[-2000:]
