"""Twin critics as two matrix products per layer, or as one batched (ensemble) product?

SAC's ``TwinQ`` keeps two ``nn.Sequential`` Q networks, so that every ``plasticity`` tool sees
plain ``nn.Linear`` layers. The alternative evaluates both at once: the first layers' weights
concatenated into one product (both read the same ``concat(obs, act)``), the later layers as
one ``torch.baddbmm`` over the stacked weights. This script times a critic update's forward
and backward both ways on the same parameters (Humanoid-v5 sizes: 348 + 17 inputs, 256-256,
batch 256) and checks that they agree.

Run: ``python -m benchmarks.twin_critic`` (``--device``, ``--threads``, ``--repeats``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from agents.sac import TwinQ


def batched_forward(critic: TwinQ, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Both Q networks of ``critic`` as one product per layer; shape ``(2, batch)``."""
    firsts, middles, lasts = ([critic.qf1[i], critic.qf2[i]] for i in (0, 2, 4))  # Linears
    x = torch.cat([obs, act], 1)
    w1 = torch.cat([layer.weight for layer in firsts])
    b1 = torch.cat([layer.bias for layer in firsts])
    h = F.relu(F.linear(x, w1, b1)).unflatten(1, (2, -1)).transpose(0, 1)  # (2, batch, hidden)
    w2 = torch.stack([layer.weight for layer in middles]).mT
    b2 = torch.stack([layer.bias for layer in middles]).unsqueeze(1)
    h = F.relu(torch.baddbmm(b2, h, w2))
    w3 = torch.stack([layer.weight for layer in lasts]).mT
    b3 = torch.stack([layer.bias for layer in lasts]).unsqueeze(1)
    return torch.baddbmm(b3, h, w3).squeeze(-1)


def time_update(forward, critic, obs, act, target, repeats: int, device: torch.device) -> float:
    """Median seconds of one forward + backward of the twin TD loss."""

    def update():
        q = forward(critic, obs, act)
        (F.mse_loss(q[0], target) + F.mse_loss(q[1], target)).backward()
        critic.zero_grad(set_to_none=True)

    for _ in range(20):
        update()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(50):
            update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / 50)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    critic = TwinQ(348, 17, 256).to(device)
    obs, act = torch.randn(256, 348, device=device), torch.rand(256, 17, device=device)
    target = torch.randn(256, device=device)
    with torch.no_grad():
        gap = (batched_forward(critic, obs, act) - critic(obs, act)).abs().max().item()
    print(f"max |batched - separate| = {gap:.1e}")
    separate = time_update(lambda c, o, a: c(o, a), critic, obs, act, target, args.repeats, device)
    batched = time_update(batched_forward, critic, obs, act, target, args.repeats, device)
    print(
        f"{device.type}, {args.threads} threads: forward+backward separate {separate * 1e3:.2f} "
        f"ms, batched {batched * 1e3:.2f} ms (batched/separate {batched / separate:.2f})"
    )


if __name__ == "__main__":
    main()
