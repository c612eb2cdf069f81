"""PyTorch (CPU build): an eager training loop, as PyTorch's tutorials write it.

``zero_grad(set_to_none=True)``, ``backward``, ``step``; Adam with ``fused=True``
where the build supports it on the CPU, and ``channels_last`` for the CNN, both as
PyTorch's performance-tuning guide recommends. ``torch.compile`` is left out: on a
CPU it needs a C++ toolchain at run time and compiles for minutes.

Each loop runs twice: with PyTorch's default thread count (one per core), and with
one thread. On a machine whose cores are busy with other work, PyTorch's OpenMP
threads wait on each other at every operation and the default can be many times
slower than one thread; both rows show how much that cost in a given run.
"""

from __future__ import annotations

import itertools

from benchmarks.peers import common as c

LIBRARY = "torch"
LABEL = "PyTorch"


def _adam(torch, params):
    try:
        return torch.optim.Adam(params, lr=c.LEARNING_RATE, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=c.LEARNING_RATE)


def _threads(torch, name: str, run, steps: int) -> list[c.Timed]:
    """``run`` timed with the default thread count and with one thread."""
    default = torch.get_num_threads()

    def with_threads(n: int):
        def timed():
            torch.set_num_threads(n)
            return run()

        return timed

    return [
        c.Timed(f"{name} ({default} threads)", with_threads(default), steps),
        c.Timed(f"{name} (1 thread)", with_threads(1), steps),
    ]


def seed() -> list[c.Timed]:
    """1000 Adam steps of the 4-32-1 network, shuffled with ``torch.randperm``."""
    import torch

    torch.manual_seed(0)
    x, y = (torch.from_numpy(a) for a in c.seed_data())
    model = torch.nn.Sequential(
        torch.nn.Linear(c.SEED_FEATURES, c.SEED_HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(c.SEED_HIDDEN, 1),
    )
    opt = _adam(torch, model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def run():
        for _ in range(c.SEED_EPOCHS):
            perm = torch.randperm(c.SEED_N)
            for start in range(0, c.SEED_N, c.SEED_BATCH):
                idx = perm[start : start + c.SEED_BATCH]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()

    return _threads(torch, "PyTorch: eager loop", run, c.SEED_STEPS)


def _classifier(torch, model, x, y, steps):
    opt = _adam(torch, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    return _threads(torch, "PyTorch: eager loop", run, steps)


def mlp(steps: int) -> list[c.Timed]:
    """784-512-512-10 at batch 256: ``steps`` eager steps on one batch."""
    import torch

    torch.manual_seed(0)
    sizes = c.MLP_SIZES
    layers: list = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1]))
    x, y = c.mlp_data()
    return _classifier(torch, model, torch.from_numpy(x), torch.from_numpy(y).long(), steps)


def cnn(steps: int) -> list[c.Timed]:
    """The LeNet-style network at batch 128, NCHW tensors in ``channels_last`` memory."""
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    flat = (c.CNN_SIZE // 4) ** 2 * 64
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, 128),
        nn.ReLU(),
        nn.Linear(128, c.CNN_CLASSES),
    ).to(memory_format=torch.channels_last)
    x, y = c.cnn_data()
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(memory_format=torch.channels_last)
    return _classifier(torch, model, x, torch.from_numpy(y).long(), steps)
