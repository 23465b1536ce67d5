import pytest
import torch
from torch import nn

# Small networks on a 2-core machine: two threads contend with each other (and with anything
# else running) and make the suite several times slower than one thread does.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def mlp(sizes=(8, 32, 32, 4)) -> nn.Sequential:
    """A ReLU MLP whose layers are named '0', '2', '4', …; the last one is the head."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def normalized_mlp() -> nn.Sequential:
    """:func:`mlp` with a LayerNorm before each ReLU (what nap needs); the head is '6'."""
    return nn.Sequential(
        nn.Linear(8, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


def random_orthogonal(n: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    return q


def with_singular_values(rows: int, cols: int, values) -> torch.Tensor:
    """A float64 (rows, cols) matrix with the given singular values (padded with zeros)."""
    s = torch.zeros(min(rows, cols), dtype=torch.float64)
    s[: len(values)] = torch.as_tensor(values, dtype=torch.float64)
    u = random_orthogonal(rows)[:, : len(s)]
    v = random_orthogonal(cols)[:, : len(s)]
    return u @ torch.diag(s) @ v.T


def state_is_zero(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> bool:
    """Whether ``param`` has optimizer state and all of it is zero (reset in place)."""
    state = optimizer.state.get(param)
    return bool(state) and all(
        not (value.any() if isinstance(value, torch.Tensor) else value) for value in state.values()
    )
