"""The layout rule inside a partition's TFLite graph: every tensor of rank >= 3 is stored
channels last (PyTorch dim 1 moved last), lower ranks as in PyTorch.

A stored tensor carries ``perm``: stored axis ``i`` holds PyTorch dim ``perm[i]``.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["canonical_perm", "stored_shape", "transpose_to", "is_memory_noop", "stored_axis", "same_byte_order"]


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


def _walk(shape: Sequence[int], perm: Sequence[int]) -> list[tuple[int, int]]:
    """(size, PyTorch element stride) of the stored axes in storage order, size-1 axes dropped and
    axes that continue one another merged: two tensors hold their elements in the same byte order
    exactly when their walks are equal."""
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * int(shape[d + 1])
    walk: list[tuple[int, int]] = []
    for p in perm:
        size, stride = int(shape[p]), strides[p]
        if size == 1:
            continue
        if walk and walk[-1][1] == size * stride:
            walk[-1] = (walk[-1][0] * size, stride)
        else:
            walk.append((size, stride))
    return walk


def same_byte_order(shape_a: Sequence[int], perm_a: Sequence[int], shape_b: Sequence[int],
                    perm_b: Sequence[int]) -> bool:
    """Whether a tensor of PyTorch shape ``shape_a`` stored as ``perm_a`` and its PyTorch ``view``
    as ``shape_b`` stored as ``perm_b`` hold the elements in the same order (a RESHAPE, or
    nothing, turns one into the other)."""
    return _walk(shape_a, perm_a) == _walk(shape_b, perm_b)
