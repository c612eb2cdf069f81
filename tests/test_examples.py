"""The learning claims the examples make, checked from fixed seeds."""

import importlib.util
import pathlib
import sys

import chex
import jax
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


def test_evosax_example_names_the_extra_when_evosax_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "evosax", None)  # import evosax raises ImportError
    example = load("evolution_strategy_evosax")
    with pytest.raises(SystemExit, match=r'needs evosax.*pip install -e "\.\[evosax\]"'):
        example.main(quick=True)


def test_evosax_open_es_follows_the_hand_written_strategy():
    """Given the same keys, evosax's Open_ES (set up as the hand-written OpenAI-ES)
    draws the same noise and takes the same steps: the two searches agree to float
    rounding over 20 generations, and both lower the loss."""
    pytest.importorskip("evosax")
    example = load("evolution_strategy_evosax")
    task = example.hand.problem()
    keys = jax.random.split(jax.random.key(1), 20)
    theta_hand, losses_hand = example.hand_run(task.loss, task.theta)(keys)
    # evosax broadcasts ranks implicitly (mean + std * z), which the suite's strict
    # promotion modes (conftest.py) refuse: allow them for its code only.
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        theta_evosax, losses_evosax = example.evosax_run(
            example.open_es(example.import_evosax(), task.theta), task.loss, task.theta
        )(keys)
    # float32 sums in another order: agreement to 1e-5 of the weights (about 0.5).
    chex.assert_trees_all_close(theta_evosax, theta_hand, atol=1e-5)
    chex.assert_trees_all_close(losses_evosax, losses_hand, atol=1e-5)
    assert float(losses_hand[-1]) < 0.9 * float(task.loss(task.theta[None])[0])
