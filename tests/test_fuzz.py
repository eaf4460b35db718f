"""Seeded fuzz test of grsn_sj's public constructors and forward calls (issue 15).

Over shapes (odd sizes, T = 1, N = 1, an empty batch, extra batch dimensions, non-contiguous
views), dtypes (float32, float64, int64, bool), step modes, backends, reset modes, surrogates,
states and episode starts -- valid values mostly, invalid ones sometimes -- every call must
either return the torch reference's result (``backend='torch'``, the same weights) or raise a
TypeError / ValueError: never another exception, never a result from one backend and an error
from the other (except a ValueError of a requested backend that cannot run the call, e.g. an
unfused surrogate), never NaN or inf from finite input. All failing cases are reported together.
"""
from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import surrogate

from grsn_sj import GRSN, GRSNNode, RecurrentGRSN, grsn_multi_step

try:
    from grsn_sj.snntorch import GRSN as SnnGRSN
except ImportError:  # the snntorch extra is not installed
    SnnGRSN = None

SEED = 20261201
CASES = 1000
ALLOWED = (TypeError, ValueError)


class _Raised:
    """The outcome of a call that raised ``TypeError`` / ``ValueError``."""

    def __init__(self, exc: BaseException):
        self.type = type(exc)
        self.text = f"{type(exc).__name__}: {exc}"


def _pick(rng: random.Random, good: list, bad: list, p_bad: float = 0.03):
    return rng.choice(bad) if bad and rng.random() < p_bad else rng.choice(good)


def _tensor(rng: random.Random, shape: tuple, dtype=None, finite: bool = True):
    dtype = dtype or rng.choice([torch.float32] * 6 + [torch.float64] * 3
                                + [torch.int64, torch.bool])
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * rng.choice([0.5, 2.0, 8.0, 40.0])
    if dtype == torch.bool:
        x = x > 0
    elif dtype == torch.int64:
        x = x.round().to(torch.int64)
    else:
        x = x.to(dtype)
    if rng.random() < 0.15 and x.dim() >= 2 and x.shape[0] > 1:  # a non-contiguous view
        x = x.flip(0)
    if not finite and x.is_floating_point() and x.numel():
        x.view(-1)[rng.randrange(x.numel())] = rng.choice([math.nan, math.inf, -math.inf])
    return x


def _starts(rng: random.Random, shape: tuple):
    if rng.random() < 0.5:
        return None
    if rng.random() < 0.05:  # wrong shape, or not a tensor
        return rng.choice([torch.zeros((*shape, 2)), [[0.0]], torch.zeros(shape[:-1] or (3,))])
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    mask = torch.rand(shape, generator=g) < 0.3
    return mask.to(rng.choice([torch.float32, torch.float64, torch.bool, torch.int64]))


def _neuron_kwargs(rng: random.Random) -> dict:
    kw = dict(
        tau=_pick(rng, [1.0, 2.0, 3.5], [0.5, math.nan, "2", True]),
        v_threshold=_pick(rng, [0.5, 1.0], [0.0, -1.0, math.inf, None]),
        v_reset=_pick(rng, [None, None, 0.0, -0.3, 0.4], ["0", math.nan]),
        surrogate_function=_pick(rng, [surrogate.ATan(), surrogate.Sigmoid(),
                                       surrogate.ATan(spiking=False),
                                       surrogate.PiecewiseQuadratic()], ["atan"]),
        detach_reset=_pick(rng, [False, True], [1]),
        backend=_pick(rng, ["auto", "numba", "torch"], ["gpu"]),
    )
    if rng.random() < 0.3:
        kw["learnable_tau"] = True
    return kw


def _size(rng: random.Random) -> int:
    return _pick(rng, [1, 2, 3, 5, 8, 13], [0, -2, 2.5, True, "4", None])


def _match_dtype(rng: random.Random, module: torch.nn.Module, x) -> None:
    """Mostly give a float64 input a float64 module (else the dtype mismatch is refused)."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.float64 and rng.random() < 0.8:
        module.double()


def _set_torch_backend(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, GRSNNode):
            m.backend = "torch"


def _call(fn):
    try:
        return fn()
    except ALLOWED as exc:
        return _Raised(exc)


def _tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _compare(got, want, finite_input: bool) -> None:
    if isinstance(got, _Raised) and not isinstance(want, _Raised) and got.type is ValueError \
            and "backend" in got.text:
        return  # a backend the caller asked for refuses (unknown name, unfused surrogate)
    if isinstance(got, _Raised) or isinstance(want, _Raised):
        assert isinstance(got, _Raised) and isinstance(want, _Raised), (
            f"backend outcome {getattr(got, 'text', 'a result')} but reference "
            f"{getattr(want, 'text', 'a result')}")
        assert got.type is want.type, f"{got.text} vs reference {want.text}"
        return
    got_t, want_t = _tensors(got), _tensors(want)
    assert len(got_t) == len(want_t)
    for a, b in zip(got_t, want_t):
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{tuple(a.shape)} {a.dtype} vs reference {tuple(b.shape)} {b.dtype}")
        if finite_input:
            assert torch.isfinite(a).all(), "non-finite output from finite input"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ one case per kind

def _node_case(rng, finite):
    kw = _neuron_kwargs(rng)
    hidden = rng.choice([1, 2, 3, 7])
    if kw.get("learnable_tau") or rng.random() < 0.3:
        kw["size"] = _pick(rng, [hidden], [0, hidden + 1, 1.5])
    mode = rng.choice(["s", "m"])
    lead = (rng.choice([1, 2, 5]),) if mode == "m" else ()
    batch = rng.choice([(), (1,), (3,), (0,), (2, 3)])
    last = _pick(rng, [2 * hidden], [2 * hidden + 1, 0])
    shape = (*lead, *batch, last)
    x = _tensor(rng, shape, finite=finite) if rng.random() > 0.03 else [[0.0] * last]
    starts = _starts(rng, shape[:-1]) if len(shape) > 1 else None

    def build():
        return GRSNNode(step_mode=mode, **kw)

    node = _call(build)
    if isinstance(node, _Raised):
        return node, node
    ref = copy.deepcopy(node)
    _set_torch_backend(ref)

    def run(n):
        sj_functional.reset_net(n)
        out = n(x) if starts is None else n(x, starts)
        again = n(x) if starts is None else n(x, starts)  # carries the state on
        return out, again, n.v, n.c

    return _call(lambda: run(node)), _call(lambda: run(ref))


def _block_case(rng, finite):
    kw = _neuron_kwargs(rng)
    in_f, hidden = _size(rng), _size(rng)
    mode = rng.choice(["s", "m"])
    recur = _pick(rng, [False, False, True], [1])
    shape = ((rng.choice([1, 3]),) if mode == "m" else ()) + rng.choice([(), (1,), (4,), (0,)])
    last = in_f if isinstance(in_f, int) and not isinstance(in_f, bool) and in_f > 0 else 3
    shape = (*shape, _pick(rng, [last], [last + 1]))
    x = _tensor(rng, shape, finite=finite)
    starts = _starts(rng, shape[:-1]) if len(shape) > 1 else None
    torch.manual_seed(rng.randrange(2 ** 31))
    block = _call(lambda: GRSN(in_f, hidden, step_mode=mode, spike_recurrence=recur, **kw))
    if isinstance(block, _Raised):
        return block, block
    if block.recurrent is not None:
        with torch.no_grad():
            block.recurrent.weight.normal_(0.0, 1.0)
    _match_dtype(rng, block, x)
    ref = copy.deepcopy(block)
    _set_torch_backend(ref)

    def run(b):
        sj_functional.reset_net(b)
        out = b(x) if starts is None else b(x, starts)
        return out, b.node.v, b.node.c

    return _call(lambda: run(block)), _call(lambda: run(ref))


def _rnn_case(rng, finite):
    kw = _neuron_kwargs(rng)
    kw["spike_recurrence"] = rng.random() < 0.25
    in_f, hidden = _size(rng), _size(rng)
    layers = _pick(rng, [1, 1, 2], [0])
    T, N = rng.choice([1, 2, 6]), rng.choice([0, 1, 3])
    feat = in_f if isinstance(in_f, int) and not isinstance(in_f, bool) and in_f > 0 else 2
    shape = _pick(rng, [(T, N, feat)], [(N, feat), (T, N, feat + 1), (0, N, feat)])
    x = _tensor(rng, shape, finite=finite)
    state = None
    if rng.random() < 0.4 and isinstance(hidden, int) and not isinstance(hidden, bool) \
            and hidden > 0 and isinstance(layers, int):
        st_shape = _pick(rng, [(layers, N, hidden)], [(layers, N + 1, hidden)])
        dtype = x.dtype if x.is_floating_point() and rng.random() < 0.8 else torch.float64
        state = (_tensor(rng, st_shape, dtype), _tensor(rng, st_shape, dtype).abs())
    starts = _starts(rng, shape[:2]) if len(shape) == 3 else None
    torch.manual_seed(rng.randrange(2 ** 31))
    core = _call(lambda: RecurrentGRSN(in_f, hidden, layers, **kw))
    if isinstance(core, _Raised):
        return core, core
    if core.spike_recurrence:
        with torch.no_grad():
            for layer in core.layers:
                layer.recurrent.weight.normal_(0.0, 1.0)
    _match_dtype(rng, core, x)
    ref = copy.deepcopy(core)
    _set_torch_backend(ref)

    def run(m):
        return m.forward_sequence(x, state, starts)

    return _call(lambda: run(core)), _call(lambda: run(ref))


def _op_case(rng, finite):
    hidden = rng.choice([1, 3, 4])
    T = rng.choice([1, 4])
    batch = rng.choice([(1,), (3,), (0,), (2, 2)])
    x = _tensor(rng, _pick(rng, [(T, *batch, 2 * hidden)], [(T, *batch, 2 * hidden + 1)]),
                finite=finite)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    v = _tensor(rng, _pick(rng, [(*batch, hidden)], [(*batch, hidden + 1)]), dtype)
    c = _tensor(rng, (*batch, hidden), dtype).abs()
    beta = _pick(rng, [0.5, 0.0, 0.9, torch.rand(hidden, dtype=dtype)], [torch.rand(hidden + 1)])
    mask = _starts(rng, (T, *batch))
    kw = _neuron_kwargs(rng)
    args = dict(v_threshold=kw["v_threshold"], v_reset=kw["v_reset"],
                surrogate_function=kw["surrogate_function"], detach_reset=kw["detach_reset"],
                reset_mask=mask)
    got = _call(lambda: grsn_multi_step(x, v, c, beta, backend=kw["backend"], **args))
    want = _call(lambda: grsn_multi_step(x, v, c, beta, backend="torch", **args))
    return got, want


def _snntorch_case(rng, finite):
    in_f, hidden = _size(rng), _size(rng)
    kw = dict(tau=_pick(rng, [1.0, 2.0, 3.0], [0.5]),
              reset_mechanism=_pick(rng, ["subtract", "zero"], ["none"]),
              learn_beta=rng.random() < 0.3, init_hidden=rng.random() < 0.3)
    feat = in_f if isinstance(in_f, int) and not isinstance(in_f, bool) and in_f > 0 else 2
    shape = rng.choice([(feat,), (1, feat), (3, feat), (0, feat), (2, 3, feat)])
    x = _tensor(rng, shape, finite=finite)
    neuron = _call(lambda: SnnGRSN(in_f, hidden, **kw))
    if isinstance(neuron, _Raised):
        return neuron, neuron
    _match_dtype(rng, neuron, x)

    def run():
        first = neuron(x)
        second = neuron(x) if kw["init_hidden"] else neuron(x, first[1])
        return first, second

    out = _call(run)
    return out, out  # no second backend: the NaN and exception checks apply


KINDS = [_node_case, _block_case, _rnn_case, _op_case] + ([_snntorch_case] if SnnGRSN else [])


def test_fuzz_public_constructors_and_forward_calls():
    rng = random.Random(SEED)
    failures = []
    for i in range(CASES):
        kind = KINDS[i % len(KINDS)]
        finite = rng.random() > 0.1
        case_seed = rng.randrange(2 ** 31)
        case_rng = random.Random(case_seed)
        try:
            got, want = kind(case_rng, finite)
            _compare(got, want, finite)
        except Exception as exc:  # noqa: BLE001 -- any other exception is a finding
            failures.append(f"{kind.__name__} seed={case_seed} finite={finite}: "
                            f"{type(exc).__name__}: {str(exc)[:300]}")
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n" + "\n".join(failures)


def test_fuzz_finds_a_non_finite_input_error():
    """The harness is live: a case with a NaN input is refused (a ValueError), and a broken
    comparison is reported."""
    got = _call(lambda: GRSNNode(step_mode="m")(torch.full((2, 1, 4), math.nan)))
    assert isinstance(got, _Raised) and got.type is ValueError
    with pytest.raises(AssertionError):
        _compare(torch.zeros(2), torch.ones(2), True)
    with pytest.raises(AssertionError):
        _compare(torch.zeros(2), got, True)
