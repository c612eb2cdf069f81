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


@pytest.mark.parametrize("name", ["sequence_rnn", "transformer", "evolution_strategy"])
def test_example_reaches_its_stated_accuracy(name, capsys):
    """The full runs (seconds each): the GRU's parity, the transformer's sorting,
    the evolution strategy's classification without gradients."""
    example = load(name)
    accuracy = example.main(quick=False)
    assert accuracy >= example.TARGET, capsys.readouterr().out[-2000:]
