"""Micro-benchmark of the plasticity operations on this machine.

1. FIRE on one square layer: 10 Newton–Schulz steps vs the exact SVD polar factor.
2. What AdamO adds to a whole training update (forward, backward, optimizer step) of a
   SAC-sized critic (256-256 MLP, batch 256) and an Atari-sized Nature CNN (batch 32),
   against plain Adam, for several amortization periods ``iso_every``.

Run: ``python -m benchmarks.plasticity_ops`` (add ``--quick`` for a short run). Writes
``benchmarks/results/plasticity_ops.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plasticity import AdamO, adamo_param_groups, newton_schulz, polar

RESULTS = Path(__file__).parent / "results"


def median_time(fn, repeats: int, inner: int) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls, in seconds (after warm-up)."""
    for _ in range(max(2, inner // 4)):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def bench_fire(sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for n in sizes:
        w = torch.randn(n, n)
        inner = max(1, int(2e9 / (20 * n**3)))  # about a second of work per sample
        reps = repeats if n <= 1024 else 2  # a 4096² SVD alone takes tens of seconds here
        ns = median_time(lambda w=w: newton_schulz(w, 10), reps, inner)
        svd = median_time(lambda w=w: polar(w), reps, inner)
        rows.append(
            {"width": n, "newton_schulz_s": ns, "svd_polar_s": svd, "svd_over_ns": svd / ns}
        )
        print(
            f"FIRE {n:>5}x{n:<5} NS(10) {ns * 1e3:9.2f} ms   SVD polar {svd * 1e3:9.2f} ms   "
            f"SVD/NS {svd / ns:5.2f}"
        )
    return rows


class SACCritic(nn.Module):
    """Twin-free SAC critic as in CleanRL: concat(obs, act) → 256 → 256 → 1."""

    def __init__(self, obs_dim: int = 51, act_dim: int = 19):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, obs, act):
        h = F.relu(self.fc1(torch.cat([obs, act], 1)))
        return self.fc3(F.relu(self.fc2(h)))


class NatureCNN(nn.Module):
    """The DQN Nature network (Mnih et al. 2015) for (4, 84, 84) frames and 18 actions."""

    def __init__(self, actions: int = 18):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 32, 8, stride=4)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 64, 3, stride=1)
        self.fc1 = nn.Linear(3136, 512)
        self.fc2 = nn.Linear(512, actions)

    def forward(self, x):
        h = F.relu(self.conv1(x / 255.0))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h)).flatten(1)
        return self.fc2(F.relu(self.fc1(h)))


def update_fn(net: nn.Module, opt: torch.optim.Optimizer, batch):
    inputs, target = batch

    def update():
        loss = F.mse_loss(net(*inputs), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return update


def bench_adamo(name: str, make_net, batch, periods: list[int], repeats: int, inner: int):
    """Update time with Adam and with AdamO at each ``iso_every``, measured round-robin.

    Every repeat times each variant once in turn, so a load change on the machine hits all
    variants alike; the median over repeats is reported.
    """
    variants = {"Adam": None, **{f"AdamO iso_every={k}": k for k in periods}}
    updates = {}
    for label, k in variants.items():
        torch.manual_seed(0)
        net = make_net()
        opt = (
            torch.optim.Adam(net.parameters(), lr=3e-4, fused=True)  # as make_method builds it
            if k is None
            else AdamO(adamo_param_groups(net, iso_every=k), lr=3e-4)
        )
        updates[label] = update_fn(net, opt, batch)
        for _ in range(max(2, inner // 4)):  # warm-up
            updates[label]()
    samples: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(repeats):
        for label, update in updates.items():
            start = time.perf_counter()
            for _ in range(inner):
                update()
            samples[label].append((time.perf_counter() - start) / inner)
    base = statistics.median(samples["Adam"])
    rows = []
    for label, k in variants.items():
        t = statistics.median(samples[label])
        rows.append(
            {
                "network": name,
                "optimizer": label.split()[0],
                "iso_every": k,
                "update_ms": t * 1e3,
                "added": t / base - 1,
            }
        )
        print(
            f"{name:<12} {label:<22} {t * 1e3:8.3f} ms/update  added {100 * (t / base - 1):+6.1f}%"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--skip-fire", action="store_true", help="only the AdamO part")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    sizes = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048, 4096]
    periods = [1, 32] if args.quick else [1, 2, 4, 8, 16, 32]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )

    fire = [] if args.skip_fire else bench_fire(sizes, repeats)
    sac_batch = ((torch.randn(256, 51), torch.randn(256, 19)), torch.randn(256, 1))
    atari_batch = ((torch.randint(0, 256, (32, 4, 84, 84)).float(),), torch.randn(32, 18))
    adamo = bench_adamo("sac_critic", SACCritic, sac_batch, periods, 3 * repeats, 200)
    adamo += bench_adamo("nature_cnn", NatureCNN, atari_batch, periods, repeats, 20)

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "plasticity_ops.json"
    out.write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "device": "cpu",
                "fire": fire,
                "adamo": adamo,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
