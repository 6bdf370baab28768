"""Analytic test functions, from their published formulas, with their known global minima.

Each function takes an array of points of shape ``(n, d)`` and returns ``n`` values. The formulas,
domains and minima are those of the Virtual Library of Simulation Experiments (Surjanovic and
Bingham, https://www.sfu.ca/~ssurjano/optimization.html):

- Branin (Branin-Hoo), 2-D on [-5, 10] x [0, 15]: three global minima of 0.397887.
- Hartmann-6, 6-D on [0, 1]^6: one global minimum of -3.32237.
- Rastrigin, d-D on [-5.12, 5.12]^d: highly multimodal, global minimum 0 at the origin.
- Ackley (a=20, b=0.2, c=2 pi), d-D on [-32.768, 32.768]^d: global minimum 0 at the origin.

Added so that the default plan is not tuned to the functions above, each of another character:

- Rosenbrock, 4-D on [-5, 10]^4: one long, curved, flat-bottomed valley; minimum 0 at (1, ..., 1).
- Levy, 5-D on [-10, 10]^5: many local minima on a slowly varying surface; minimum 0 at the ones.
- Styblinski-Tang, 6-D on [-5, 5]^6: separable, with its minimum (-39.16599 d) near a corner at
  x_i = -2.903534 and a deceptive second basin at +2.75.
- Shekel (m=10), 4-D on [0, 10]^4: ten sharp, narrow wells on a flat plane; minimum -10.5364 at
  (4, 4, 4, 4).
- Six-hump camel, 2-D on [-3, 3] x [-2, 2]: two global minima of -1.0316 among six local ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float64]
"""Points of a search domain, one per row."""


@dataclass(frozen=True)
class AnalyticFunction:
    """A test function with its box domain and its known global minimizers."""

    name: str
    function: Callable[[Points], NDArray[np.float64]]
    bounds: tuple[tuple[float, float], ...]
    """(low, high) of each coordinate."""
    minimizers: tuple[tuple[float, ...], ...]
    """The published global minimizers."""
    minimum: float
    """The published global minimum."""

    @property
    def dim(self) -> int:
        return len(self.bounds)


def branin(x: Points) -> NDArray[np.float64]:
    """Branin-Hoo with its usual constants."""
    x1, x2 = x[:, 0], x[:, 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_HARTMANN_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: Points) -> NDArray[np.float64]:
    """Hartmann 6-D: minus a sum of four Gaussian-like bumps."""
    squared = (x[:, None, :] - _HARTMANN_P[None, :, :]) ** 2
    inner = np.sum(_HARTMANN_A[None, :, :] * squared, axis=2)
    result: NDArray[np.float64] = -np.sum(_HARTMANN_ALPHA * np.exp(-inner), axis=1)
    return result


def rastrigin(x: Points) -> NDArray[np.float64]:
    """Rastrigin: a bowl covered in a lattice of local minima."""
    result: NDArray[np.float64] = 10 * x.shape[1] + np.sum(
        x**2 - 10 * np.cos(2 * math.pi * x), axis=1
    )
    return result


def ackley(x: Points) -> NDArray[np.float64]:
    """Ackley: a nearly flat plateau with a deep funnel at the origin."""
    d = x.shape[1]
    radial = -20 * np.exp(-0.2 * np.sqrt(np.sum(x**2, axis=1) / d))
    ripple = -np.exp(np.sum(np.cos(2 * math.pi * x), axis=1) / d)
    result: NDArray[np.float64] = radial + ripple + 20 + math.e
    return result


def rosenbrock(x: Points) -> NDArray[np.float64]:
    """Rosenbrock: a curved valley whose floor falls slowly to the minimum."""
    result: NDArray[np.float64] = np.sum(
        100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (x[:, :-1] - 1) ** 2, axis=1
    )
    return result


def levy(x: Points) -> NDArray[np.float64]:
    """Levy: a rippled surface with its minimum at the ones."""
    w = 1 + (x - 1) / 4
    first = np.sin(math.pi * w[:, 0]) ** 2
    middle = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:, :-1] + 1) ** 2), axis=1)
    last = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[:, -1]) ** 2)
    result: NDArray[np.float64] = first + middle + last
    return result


def styblinski_tang(x: Points) -> NDArray[np.float64]:
    """Styblinski-Tang: a separable quartic with two basins per coordinate."""
    result: NDArray[np.float64] = 0.5 * np.sum(x**4 - 16 * x**2 + 5 * x, axis=1)
    return result


_SHEKEL_BETA = 0.1 * np.array([1, 2, 2, 4, 4, 6, 3, 7, 5, 5])
_SHEKEL_C = np.array(
    [
        [4, 1, 8, 6, 3, 2, 5, 8, 6, 7],
        [4, 1, 8, 6, 7, 9, 3, 1, 2, 3.6],
        [4, 1, 8, 6, 3, 2, 5, 8, 6, 7],
        [4, 1, 8, 6, 7, 9, 3, 1, 2, 3.6],
    ]
)


def shekel(x: Points) -> NDArray[np.float64]:
    """Shekel (m=10): minus a sum of ten inverted wells."""
    squared = np.sum((x[:, :, None] - _SHEKEL_C[None, :, :]) ** 2, axis=1)
    result: NDArray[np.float64] = -np.sum(1 / (squared + _SHEKEL_BETA[None, :]), axis=1)
    return result


def six_hump_camel(x: Points) -> NDArray[np.float64]:
    """Six-hump camel: six local minima, two of them global."""
    x1, x2 = x[:, 0], x[:, 1]
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


def analytic_functions() -> dict[str, AnalyticFunction]:
    """The benchmark's analytic functions by problem name."""
    functions = [
        AnalyticFunction(
            "branin",
            branin,
            ((-5.0, 10.0), (0.0, 15.0)),
            ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)),
            0.397887,
        ),
        AnalyticFunction(
            "hartmann6",
            hartmann6,
            ((0.0, 1.0),) * 6,
            ((0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573),),
            -3.32237,
        ),
    ]
    for dim in (5, 10):
        box = (-5.12, 5.12)
        functions.append(
            AnalyticFunction(f"rastrigin{dim}", rastrigin, (box,) * dim, ((0.0,) * dim,), 0.0)
        )
    for dim in (5, 10):
        box = (-32.768, 32.768)
        functions.append(
            AnalyticFunction(f"ackley{dim}", ackley, (box,) * dim, ((0.0,) * dim,), 0.0)
        )
    functions += [
        AnalyticFunction("rosenbrock4", rosenbrock, ((-5.0, 10.0),) * 4, ((1.0,) * 4,), 0.0),
        AnalyticFunction("levy5", levy, ((-10.0, 10.0),) * 5, ((1.0,) * 5,), 0.0),
        AnalyticFunction(
            "styblinski-tang6",
            styblinski_tang,
            ((-5.0, 5.0),) * 6,
            ((-2.903534,) * 6,),
            -39.16599 * 6,
        ),
        AnalyticFunction("shekel4", shekel, ((0.0, 10.0),) * 4, ((4.0,) * 4,), -10.5364),
        AnalyticFunction(
            "six-hump-camel",
            six_hump_camel,
            ((-3.0, 3.0), (-2.0, 2.0)),
            ((0.0898, -0.7126), (-0.0898, 0.7126)),
            -1.0316,
        ),
    ]
    return {f.name: f for f in functions}
