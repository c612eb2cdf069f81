"""Conformance cases for the convolution and pooling layers.

Inputs are small (a few hundred cells) so that the float64 finite-difference check
and the vmap-over-members check stay fast.
"""

from jaxnn.layers import conv, pooling
from tests.case import Case

# Max pooling is piecewise linear: its finite differences are exact unless a step of
# the checker's size (1e-4 in float64) swaps the winner of a window. The inputs are
# normal draws, so ties are improbable and the default tolerance holds.

CASES = {
    "Conv": [
        Case(
            "1d_causal_dilated",
            lambda: conv.Conv(4, (3,), padding="CAUSAL", kernel_dilation=2),
            (2, 7, 3),
        ),
        Case(
            "2d_pairs_groups",
            lambda: conv.Conv(4, (2, 3), padding=((1, 0), (1, 1)), groups=2),
            (2, 4, 5, 2),
        ),
    ],
    "Conv1D": [
        Case("same_nobias", lambda: conv.Conv1D(3, 3, use_bias=False), (2, 6, 2)),
    ],
    "Conv2D": [
        Case("same_strided", lambda: conv.Conv2D(4, 3, strides=2), (2, 5, 5, 3)),
        Case("depthwise_valid", lambda: conv.Conv2D(3, 3, padding="VALID", groups=3), (2, 5, 5, 3)),
        # One input channel: summed tap by tap on the CPU, not by XLA's convolution.
        Case("one_channel", lambda: conv.Conv2D(4, 3, strides=(2, 1)), (2, 5, 6, 1)),
    ],
    "Conv3D": [
        Case("strided", lambda: conv.Conv3D(2, 2, strides=(1, 2, 2)), (2, 3, 4, 4, 2)),
    ],
    "ConvTranspose": [
        Case(
            "1d_valid", lambda: conv.ConvTranspose(3, (3,), strides=2, padding="VALID"), (2, 4, 2)
        ),
        Case(
            "2d_pairs_dilated",
            lambda: conv.ConvTranspose(2, (2, 2), padding=((1, 0), (0, 1)), kernel_dilation=2),
            (2, 3, 3, 2),
        ),
    ],
    "ConvTranspose1D": [
        Case("same", lambda: conv.ConvTranspose1D(2, 4, strides=2), (2, 4, 3)),
    ],
    "ConvTranspose2D": [
        Case(
            "same_nobias",
            lambda: conv.ConvTranspose2D(3, 2, strides=2, use_bias=False),
            (2, 3, 3, 2),
        ),
    ],
    "ConvTranspose3D": [
        Case("valid", lambda: conv.ConvTranspose3D(2, 2, padding="VALID"), (2, 2, 3, 2, 2)),
    ],
    "MaxPool": [
        Case(
            "2d_same_overlap",
            lambda: pooling.MaxPool((3, 3), strides=2, padding="SAME"),
            (2, 5, 5, 3),
        ),
    ],
    "MaxPool1D": [Case("same", lambda: pooling.MaxPool1D(3, 2, "SAME"), (2, 7, 2))],
    "MaxPool2D": [Case("valid", lambda: pooling.MaxPool2D(2), (2, 5, 5, 3))],
    "MaxPool3D": [Case("valid", lambda: pooling.MaxPool3D(2), (2, 4, 4, 4, 2))],
    "AvgPool": [
        Case("1d_pairs", lambda: pooling.AvgPool((3,), strides=1, padding=((2, 1),)), (2, 5, 2)),
    ],
    "AvgPool1D": [Case("valid", lambda: pooling.AvgPool1D(2), (2, 6, 3))],
    "AvgPool2D": [Case("valid", lambda: pooling.AvgPool2D(2), (2, 5, 5, 3))],
    "AvgPool3D": [Case("same", lambda: pooling.AvgPool3D(2, padding="SAME"), (2, 3, 3, 3, 2))],
    "GlobalAvgPool": [
        Case("2d", lambda: pooling.GlobalAvgPool(), (2, 4, 4, 3)),
        Case("1d_keepdims", lambda: pooling.GlobalAvgPool(keepdims=True), (2, 5, 3)),
    ],
    "GlobalMaxPool": [
        Case("2d", lambda: pooling.GlobalMaxPool(), (2, 4, 4, 3)),
        Case("3d_keepdims", lambda: pooling.GlobalMaxPool(keepdims=True), (2, 3, 3, 2, 2)),
    ],
}
