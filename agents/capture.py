"""Each update captured whole as one CUDA graph (``--whole-graph``), and the check of it.

A CUDA graph replays the kernels that one call of a function launched, on the same memory;
none of the Python code runs again. ``torch.cuda.graph`` captures forward, backward and
optimizer step of an update in one graph (the whole-network capture of torch's CUDA graphs
notes; LeanRL's ``CudaGraphModule`` wraps the same mechanism), where ``torch.compile`` splits
an update into several graphs (see docs/gpu.md). A replay is right only if every later call
would have launched the same kernels, with the same non-tensor arguments, on the same
long-lived tensors (parameters, optimizer state, a method's buffers): a Python value that
changes between calls (a host counter, a learning rate as a float) is frozen at capture time,
and the update then trains wrongly without any error.

:class:`OpStream` makes that checkable on any device: it records the operators a call
dispatches, each with its arguments' shapes and dtypes, its non-tensor arguments and, for
each tensor that the call did not produce itself, its address. Two calls whose streams are
equal launch the same work on the same memory. :class:`WholeGraph` captures on CUDA and, on
the CPU, runs each call eagerly and compares its stream with the first captured call's: the
same run, the same numbers as eager, with an error at the first call a graph would have
replayed wrongly.

Optimizers: ``torch.optim.Adam``/``AdamW`` are switched to ``capturable`` on CUDA (their step
counts live on the device); :class:`plasticity.AdamO`'s isometry step, whose schedule is a
host counter, is taken on the host around each replay (:class:`plasticity.optim.
DeferredIsometry`, the same arithmetic); any other optimizer is not captured, and the update
falls back to ``--cudagraphs``' compiled graphs with a notice.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only

from agents.errors import UserError
from plasticity.optim import AdamO, DeferredIsometry

_PLAIN_VALUES = (
    bool,
    int,
    float,
    complex,
    str,
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
)


def fallback_words(device: torch.device) -> str:
    """How a function that cannot be captured whole runs instead on ``device``."""
    return "as --cudagraphs compiles it" if device.type == "cuda" else "eagerly, unchecked"


class NotCapturable(UserError):
    """A function that a CUDA graph cannot replay correctly (one line for the user)."""


class ReplayMismatch(NotCapturable):
    """A call launched other work than the captured call: a replay would run the wrong one."""


class HostRead(NotCapturable):
    """The function reads a tensor's value on the host, which a capture refuses."""


HOST_READS = {
    "aten._local_scalar_dense.default": ".item(), float(), bool() or a Python if on a tensor",
    "aten.nonzero.default": "nonzero() or a boolean mask's indexing (a shape the values decide)",
    "aten.masked_select.default": "masked_select() (a shape the values decide)",
    "aten.equal.default": "torch.equal()",
}
"""Operators that bring a device value to the host, with what in Python calls them."""


class OpStream(TorchDispatchMode):
    """The operators dispatched while active, as comparable records (see the module doc).

    A tensor argument is named by where it came from: the index of the operator of this call
    that produced it (in place or not), or, for one the call did not produce, its address
    (``data_ptr``): a parameter, an optimizer's moment, a captured input.
    """

    def __init__(self):
        super().__init__()
        self.ops: list[tuple] = []
        self._producer: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "profiler":  # record_function's markers launch no kernel
            return func(*args, **kwargs)
        leaves, _ = tree_flatten((args, kwargs))
        record = (str(func), tuple(self._describe(leaf) for leaf in leaves))
        out = func(*args, **kwargs)
        index = len(self.ops)
        self.ops.append(record)
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._producer[tensor.data_ptr()] = index
        return out

    def _describe(self, leaf) -> tuple:
        if isinstance(leaf, torch.Tensor):
            ptr = leaf.data_ptr()
            source = ("op", self._producer[ptr]) if ptr in self._producer else ("at", ptr)
            return (
                "tensor",
                tuple(leaf.shape),
                leaf.stride(),
                leaf.dtype,
                leaf.device.type,
                source,
            )
        if leaf is None or isinstance(leaf, _PLAIN_VALUES):
            return ("value", repr(leaf))
        return ("value", type(leaf).__name__)  # an opaque object: its address says nothing


def first_difference(expected: list[tuple], got: list[tuple]) -> str:
    """Where two op streams part, in words."""
    for i, (a, b) in enumerate(zip(expected, got, strict=False)):
        if a == b:
            continue
        if a[0] != b[0] or len(a[1]) != len(b[1]):
            return f"operator {i} was {a[0]}, now {b[0]}"
        j = next(j for j, (was, now) in enumerate(zip(a[1], b[1], strict=True)) if was != now)
        return (
            f"operator {i} ({a[0]}), argument {j}: {_argument(a[1][j])} at capture, "
            f"now {_argument(b[1][j])}"
        )
    common = min(len(expected), len(got))
    longer, which = (got, "this call") if len(got) > common else (expected, "the capture")
    return f"{which} ran {len(longer) - common} more operator(s), from {longer[common][0]}"


def _argument(description: tuple) -> str:
    if description[0] == "value":
        return description[1]
    _, shape, _, dtype, device, (kind, where) = description
    origin = f"made by operator {where}" if kind == "op" else f"kept at {where:#x}"
    return f"a {device} {dtype} tensor of shape {list(shape)}, {origin}"


@dataclass
class _Capture:
    """One captured signature (the shapes and dtypes of the call's tensors)."""

    eager_calls: int = 0
    static_args: tuple = ()
    outputs: object = None
    graph: torch.cuda.CUDAGraph | None = None
    ops: list[tuple] = field(default_factory=list)


class WholeGraph:
    """``fn`` (an update or acting function of tensors) replayed as one CUDA graph per input
    signature; on the CPU, the check of that (see the module doc).

    The first ``warmup`` calls of each signature run eagerly (on CUDA on a side stream, as
    capture needs): they create the optimizers' state, and the last one shows which optimizers
    the function steps. The next call is captured; its inputs are copied into tensors the
    graph keeps, and so are those of every later call. Outputs are copied out of the graph's
    memory, which the next replay overwrites. ``fallback`` wraps ``fn`` instead when one of
    its optimizers cannot be captured.
    """

    def __init__(
        self,
        fn: Callable,
        device: torch.device,
        fallback: Callable[[Callable], Callable],
        warmup: int = 3,
    ):
        self.fn, self.device, self.fallback, self.warmup = fn, device, fallback, warmup
        self.captures: dict[tuple, _Capture] = {}
        self.replays = 0  # calls served by a capture (checked ones on the CPU)
        self.deferred = DeferredIsometry([])
        self.replaced: Callable | None = None

    def __call__(self, *args):
        if self.replaced is not None:
            return self.replaced(*args)
        signature = tuple((tuple(a.shape), a.dtype) for a in args)
        capture = self.captures.setdefault(signature, _Capture())
        if capture.eager_calls < self.warmup:
            capture.eager_calls += 1
            if capture.eager_calls < self.warmup:
                return self._eager(args)
            optimizers, outputs = self._stepped_optimizers(args)
            refused = self._prepare(optimizers)
            if refused:
                self._fall_back(f"steps {refused}, which cannot be captured")
            return outputs
        if capture.graph is None and not capture.ops:
            return self._capture(capture, args)
        for static, value in zip(capture.static_args, args, strict=True):
            static.copy_(value)
        return self._replay(capture)

    # --- eager calls ------------------------------------------------------------------------

    def _eager(self, args):
        if self.device.type != "cuda":
            return self.fn(*args)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            outputs = self.fn(*args)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return _copied(outputs)  # on the caller's stream, after the side stream's work

    def _stepped_optimizers(self, args) -> tuple[list[torch.optim.Optimizer], object]:
        stepped: list[torch.optim.Optimizer] = []

        def note(optimizer, *_):
            if optimizer not in stepped:
                stepped.append(optimizer)

        hook = register_optimizer_step_pre_hook(note)
        try:
            outputs = self._eager(args)
        finally:
            hook.remove()
        return stepped, outputs

    def _fall_back(self, reason: str) -> None:
        """From now on ``fn`` runs as the fallback wraps it, with a one-line notice."""
        print(
            f"--whole-graph: {self.fn.__name__} {reason}; it runs {fallback_words(self.device)}",
            file=sys.stderr,
        )
        self.replaced = self.fallback(self.fn)

    def _prepare(self, optimizers: list[torch.optim.Optimizer]) -> str:
        """Make ``optimizers`` capturable; the names of those that cannot be ('' if none)."""
        refused = sorted(
            {
                type(o).__name__
                for o in optimizers
                # fused: the step counts live on the device, as a capture needs
                if type(o) not in (torch.optim.Adam, torch.optim.AdamW, AdamO)
                or not all(g["fused"] for g in o.param_groups)
            }
        )
        if refused:
            return ", ".join(refused)
        for optimizer in optimizers:
            if isinstance(optimizer, AdamO):
                self.deferred.add(optimizer)
            elif self.device.type == "cuda":
                for group in optimizer.param_groups:
                    group["capturable"] = True
        return ""

    # --- capture and replay -----------------------------------------------------------------

    def _capture(self, capture: _Capture, args):
        capture.static_args = tuple(a.clone() for a in args)
        if self.device.type == "cuda":
            return self._capture_cuda(capture, args)
        capture.ops = self._checked_call(capture)
        reads = [name for name, _ in capture.ops if name in HOST_READS]
        if reads:
            raise HostRead(
                f"{self.fn.__name__} reads a tensor's value on the host ({reads[0]}: "
                f"{HOST_READS[reads[0]]}), which a CUDA graph cannot capture; run it without "
                "--whole-graph"
            )
        return _copied(capture.outputs)

    def _capture_cuda(self, capture: _Capture, args):
        """Capture on the run's device (``torch.cuda.graph`` captures on the current one);
        the graph is kept only once its capture succeeded. A capture that reads a CPU tensor
        (a kernel takes a CPU scalar's value at capture time: a replay would keep it) is
        dropped for the fallback."""
        graph, recorder = torch.cuda.CUDAGraph(), OpStream()
        try:
            with (
                torch.cuda.device(self.device),
                self.deferred.outside(),
                torch.cuda.graph(graph),
                recorder,
            ):
                outputs = self.fn(*capture.static_args)
        except RuntimeError as error:
            raise NotCapturable(
                f"capturing {self.fn.__name__} as a CUDA graph failed "
                f"({str(error).splitlines()[0]}); run it without --whole-graph"
            ) from None
        on_host = [name for name, arguments in recorder.ops if _reads_cpu_tensor(arguments)]
        if on_host:
            self._fall_back(f"passes a CPU tensor to {on_host[0]}, whose value a graph would keep")
            return self.replaced(*args)  # the capture ran nothing: this call still runs
        capture.graph, capture.outputs = graph, outputs
        return self._replay(capture)

    def _replay(self, capture: _Capture):
        self.replays += 1
        if capture.graph is not None:
            with self.deferred.around():
                capture.graph.replay()
            return _copied(capture.outputs)
        ops = self._checked_call(capture)
        if ops != capture.ops:
            raise ReplayMismatch(
                f"{self.fn.__name__} launched other work than its captured call, which a CUDA "
                f"graph would replay instead ({first_difference(capture.ops, ops)}); "
                "run it without --whole-graph"
            )
        return _copied(capture.outputs)

    def _checked_call(self, capture: _Capture) -> list[tuple]:
        """Run ``fn`` eagerly on the captured inputs as a replay would (AdamO's isometry step
        around it); the operators it dispatched."""
        recorder = OpStream()
        with self.deferred.around(), self.deferred.outside(), recorder, _no_host_copies():
            capture.outputs = self.fn(*capture.static_args)
        return recorder.ops


def _reads_cpu_tensor(arguments: tuple) -> bool:
    return any(a[0] == "tensor" and a[4] == "cpu" for a in arguments)


@contextlib.contextmanager
def _no_host_copies() -> Iterator[None]:
    """``Tensor.tolist`` and ``Tensor.numpy`` refused: on the CPU they dispatch no operator
    the stream would see, on CUDA they copy to the host, which a capture refuses."""
    originals = torch.Tensor.tolist, torch.Tensor.numpy

    def refuse(name):
        def method(self, *args, **kwargs):
            raise HostRead(
                f"a captured function calls Tensor.{name}(), a copy to the host that a CUDA "
                "graph cannot capture; run it without --whole-graph"
            )

        return method

    torch.Tensor.tolist, torch.Tensor.numpy = refuse("tolist"), refuse("numpy")
    try:
        yield
    finally:
        torch.Tensor.tolist, torch.Tensor.numpy = originals


def _copied(outputs):
    return tree_map_only(torch.Tensor, torch.clone, outputs)
