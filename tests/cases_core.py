"""Conformance cases for Dense and the combinators."""

import jax

import jaxnn as nn
from tests.case import Case

CASES = {
    "Dense": [
        Case("dense", lambda: nn.Dense(5), (4, 3)),
        Case("dense_relu_nobias", lambda: nn.Dense(2, "tanh", use_bias=False), (4, 3)),
        Case("dense_rank3", lambda: nn.Dense(3), (2, 5, 4)),
    ],
    "Sequential": [
        Case(
            "mlp", lambda: nn.Sequential(nn.Dense(8), jax.nn.relu, nn.Dense(1, "sigmoid")), (4, 3)
        ),
    ],
    "Parallel": [
        Case("concat", lambda: nn.Parallel(nn.Dense(2), nn.Dense(3, "tanh")), (4, 3)),
        Case("add", lambda: nn.Parallel(nn.Dense(2), nn.Dense(2), merge="add"), (4, 3)),
    ],
    "Residual": [
        Case(
            "residual", lambda: nn.Residual(nn.Sequential(nn.Dense(4, "tanh"), nn.Dense(3))), (4, 3)
        ),
    ],
}
