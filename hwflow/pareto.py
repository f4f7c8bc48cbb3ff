"""The Pareto front of two-figure points, the one computation every front is drawn or
chosen from (sweep and study figures, the library figure, the study's homogeneous
designs)."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, higher being better in both
    figures (negate a figure where lower is better; equal points are all kept), in
    ascending order of the first figure."""
    front = []
    for i, (r, a) in enumerate(points):
        dominated = any(
            (r2 >= r and a2 >= a) and (r2 > r or a2 > a)
            for j, (r2, a2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
