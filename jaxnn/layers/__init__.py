"""Every layer constructor jaxnn ships, one file per family."""

from jaxnn.layers.dense import Dense

__all__ = [
    "Dense",
]
