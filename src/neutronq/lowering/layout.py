"""The layout rule inside a partition's TFLite graph: every tensor of rank >= 3 is stored
channels last (PyTorch dim 1 moved last), lower ranks as in PyTorch.

A stored tensor carries ``perm``: stored axis ``i`` holds PyTorch dim ``perm[i]``.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["canonical_perm", "stored_shape", "transpose_to", "is_memory_noop", "stored_axis"]


def canonical_perm(rank: int) -> tuple[int, ...]:
    if rank >= 3:
        return (0, *range(2, rank), 1)
    return tuple(range(rank))


def stored_shape(torch_shape: Sequence[int], perm: Sequence[int]) -> list[int]:
    return [int(torch_shape[p]) for p in perm]


def stored_axis(torch_dim: int, rank: int) -> int:
    """Where PyTorch dim ``torch_dim`` sits in the canonical stored layout."""
    return canonical_perm(rank).index(torch_dim % rank)


def transpose_to(perm_from: Sequence[int], perm_to: Sequence[int]) -> list[int]:
    """The TRANSPOSE permutation taking a tensor stored as ``perm_from`` to ``perm_to``."""
    return [list(perm_from).index(p) for p in perm_to]


def is_memory_noop(shape: Sequence[int], transpose: Sequence[int]) -> bool:
    """True when transposing ``shape`` by ``transpose`` keeps the bytes in the same order:
    the axes that are not of size 1 keep their relative order (a RESHAPE does the job)."""
    moved = [a for a in transpose if shape[a] != 1]
    return moved == sorted(moved)
