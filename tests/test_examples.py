"""The learning claims the examples make, checked from fixed seeds."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


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


# The GRU's and the evolution strategy's programs run long enough for XLA's optimisation
# to pay for itself (conftest.py); the others are faster without it.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("sequence_rnn", marks=pytest.mark.optimised),
        "transformer",
        pytest.param("evolution_strategy", marks=pytest.mark.optimised),
        "custom_layer",
    ],
)
def test_example_reaches_its_stated_accuracy(name, capsys):
    """The full runs (seconds each): the GRU's parity, the transformer's sorting,
    the evolution strategy's classification without gradients, the hand-written
    layers' two moons."""
    example = load(name)
    accuracy = example.main(quick=False)
    assert accuracy >= example.TARGET, capsys.readouterr().out[-2000:]
