"""Where and how the agents compute: torch device, CPU threads, seeding, compiled updates."""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
from collections.abc import Callable

import numpy as np
import torch

from agents.capture import WholeGraph, fallback_words
from agents.cli import CommonArgs, UserError, method_parts
from plasticity import make_method


def resolve_device(name: str) -> torch.device:
    """The torch device of ``--device`` (``auto``: CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available: use --device cpu")
    return device


def configure(args: CommonArgs) -> tuple[torch.device, Callable[[Callable], Callable]]:
    """The run's device, with torch's CPU threads set and every random generator seeded, and
    what wraps the agent's update and acting functions (:func:`compiler`)."""
    device = resolve_device(args.device)
    set_threads(args.threads)
    seed_everything(args.seed, args.torch_deterministic)
    return device, compiler(args, device)


def set_threads(threads: int) -> None:
    """Torch's CPU threads for this process (intra-op, and the inter-op pool once)."""
    torch.set_num_threads(threads)
    # settable only before the first parallel work: later calls (a second run) refuse
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic


def compiler(args: CommonArgs, device: torch.device) -> Callable[[Callable], Callable]:
    """Apply ``--matmul-precision``; return what wraps the agent's update and acting functions.

    An update function is a whole gradient step: forward, loss, backward, optimizer step (as
    LeanRL's); an acting function is the forward pass that picks one env step's actions.
    ``--compile`` wraps them in ``torch.compile`` (default mode); ``--cudagraphs`` in its
    ``reduce-overhead`` mode, which on CUDA replays the compiled graphs as CUDA graphs (see
    :func:`graphed`). Without either flag they run eagerly. Interventions rewrite parameters and
    optimizer state in place, so compiled code and graphs stay valid across them.
    """
    torch.set_float32_matmul_precision(args.matmul_precision)
    if args.whole_graph:
        return whole_graph(args, device)
    compiling = args.compile or args.cudagraphs
    if compiling and device.type == "cpu" and not any(map(shutil.which, ("g++", "c++", "clang++"))):
        raise UserError(
            "--compile on the CPU needs a C++ compiler (g++); install one "
            "(apt-get install g++) or leave out --compile"
        )
    if args.cudagraphs and device.type != "cuda":
        print("--cudagraphs needs a CUDA device; compiling without CUDA graphs", file=sys.stderr)
    if args.cudagraphs and device.type == "cuda":
        return graphed
    if compiling:
        return torch.compile
    return lambda fn: fn


def graphed(fn: Callable) -> Callable:
    """``fn`` compiled and replayed as CUDA graphs (``torch.compile``'s ``reduce-overhead``).

    Each call starts a new graph step (:func:`torch.compiler.cudagraph_mark_step_begin`), so
    the graphs may reuse their memory, and returns copies of the outputs: a graph's outputs
    live in its static memory and a later replay would overwrite the ones a caller keeps (the
    losses read at the next log point).
    """
    compiled_fn = torch.compile(fn, mode="reduce-overhead")

    def call(*args):
        torch.compiler.cudagraph_mark_step_begin()
        return torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, compiled_fn(*args))

    return call


def whole_graph(args: CommonArgs, device: torch.device) -> Callable[[Callable], Callable]:
    """``--whole-graph``: each function a :class:`agents.capture.WholeGraph`; what cannot be
    captured runs as ``--cudagraphs`` runs it on CUDA, eagerly on the CPU."""
    if args.compile or args.cudagraphs:
        raise UserError(
            "--whole-graph captures the updates without torch.compile: leave out --compile "
            "and --cudagraphs"
        )
    fallback = graphed if device.type == "cuda" else (lambda fn: fn)
    held_back = sorted(
        {
            part.name
            for network in ("actor", "critic", "q")
            for part in make_method("+".join(method_parts(args, network)) or "none").part_classes
            if not part.captured_whole
        }
    )
    if held_back:
        print(
            f"--whole-graph: {', '.join(held_back)} keeps tensors an update reads at changing "
            f"addresses; the updates run {fallback_words(device)}",
            file=sys.stderr,
        )
        return fallback
    return lambda fn: WholeGraph(fn, device, fallback)
