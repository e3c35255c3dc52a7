"""Issue 20's extension fixes, proven on the CPU build: the reset rule fused into the native threshold pass,
self-checks per dtype and under the caller's autocast / TF32 settings, modulated conv native under autocast, no
unused weight copy, the shared-memory fallback rule, exact keep tests, fake kernels for torch.compile, and a first
build that is safe when several processes start together. (The CUDA side of each is in test_native_cuda.py.)"""
import dataclasses
import threading
import time

import pytest
import torch

import sparse_core.ops as ops
from sparse_core.methods import rggan
from sparse_core.ops import loader, native
from sparse_core.ops import reference as ref


def _fresh_auto(monkeypatch, ext):
    monkeypatch.setattr(loader, "try_load", lambda kind: ext)
    monkeypatch.setattr(ops, "_verified", {})
    monkeypatch.setenv(loader.MODE_ENV, "auto")


# ---- the reset rule, fused ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,channel_dim", [((6, 5, 3, 3), 0), ((5, 6, 3, 3), 1), ((7, 9), 0)])
@pytest.mark.parametrize("level", [0.05, 3.0])   # keeps most / keeps nothing (collapses: t -> 0)
def test_fused_reset_matches_the_reference_rule(cpu_ext, monkeypatch, rng, shape, channel_dim, level):
    _fresh_auto(monkeypatch, cpu_ext)
    w = torch.randn(shape, generator=rng, requires_grad=True)
    t_native = torch.full((shape[channel_dim],), level, requires_grad=True)
    t_ref = t_native.detach().clone().requires_grad_()
    out = ops.threshold_masked_weight(w, t_native, channel_dim, reset_density=0.01)
    assert type(out.grad_fn).__name__ == "ThresholdMaskedWeightBackward"        # served natively
    ref.reset_collapsed_thresholds(w, t_ref, channel_dim, 0.01)                          # today's rule, then the mask
    expected = ref.threshold_masked_weight(w, t_ref, channel_dim)
    assert torch.equal(out, expected) and torch.equal(t_native, t_ref)
    assert bool((t_native == 0).all()) == (level == 3.0)
    g = torch.randn(shape, generator=rng)
    for a, b in zip(torch.autograd.grad(out, (w, t_native), g), torch.autograd.grad(expected, (w, t_ref), g)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_reset_boundary_is_inclusive_and_counted_exactly(cpu_ext, monkeypatch):
    """Mask keeps exactly k of 100 entries: reset iff k <= reset_density * 100 (hand count)."""
    _fresh_auto(monkeypatch, cpu_ext)
    w = torch.cat([torch.full((3,), 2.0), torch.full((97,), 0.5)]).reshape(4, 25)   # 3 entries above t = 1
    for density, collapses in ((0.03, True), (0.029, False), (0.0, False)):
        for mode in ("auto", "ref"):
            monkeypatch.setenv(loader.MODE_ENV, mode)
            t = torch.ones(4)
            out = ops.threshold_masked_weight(w, t, reset_density=density)
            assert bool((t == 0).all()) == collapses, (density, mode)
            assert torch.equal(out, w if collapses else w * (w > 1))


def test_reset_writes_t_through_data_so_earlier_graphs_stay_valid(cpu_ext, monkeypatch):
    _fresh_auto(monkeypatch, cpu_ext)
    w = torch.randn(4, 6, requires_grad=True)
    t = torch.full((4,), 0.1, requires_grad=True)
    earlier = (ops.threshold_masked_weight(w, t) * 2).sum() + t.exp().sum()   # a graph that saved t
    version = t._version
    t.data.fill_(50.0)   # the optimizer moved t far up: the next forward's mask collapses
    ops.threshold_masked_weight(w, t, reset_density=0.01)
    assert torch.equal(t.detach(), torch.zeros(4)) and t._version == version
    earlier.backward()   # no "modified by an inplace operation" error


def test_rggan_hook_uses_the_fused_reset(cpu_ext, monkeypatch):
    """The pre-hook's one call: a collapsed layer's thresholds are 0 after its forward, served natively."""
    _fresh_auto(monkeypatch, cpu_ext)
    conv = torch.nn.Conv2d(3, 4, 3)
    rggan.install(conv, [("weight", 0, None)], official=False, reset_density=0.01)
    conv.weight_threshold.data.fill_(10.0)
    before = ops.backend_counts()["threshold_masked_weight"]
    conv(torch.randn(1, 3, 5, 5))
    assert torch.equal(conv.weight_threshold.detach(), torch.zeros(4))
    n, r = ops.backend_counts()["threshold_masked_weight"]
    assert (n - before[0], r - before[1]) == (1, 0)


def test_reset_density_must_be_a_number(cpu_ext):
    with pytest.raises(TypeError, match="reset_density must be a real number"):
        ops.threshold_masked_weight(torch.ones(2, 2), torch.zeros(2), reset_density="0.01")


# ---- self-checks per dtype and precision settings ---------------------------------------------------------

class _Emulated16:
    """A correct 16-bit kernel, emulated: the fp32 CPU kernels on upcast inputs, results rounded to the dtype."""

    def __init__(self, real, skew=1.0):
        self._real, self._skew = real, skew

    def _run(self, name, *args):
        dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
        up = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
        outs = getattr(self._real, name)(*up)
        if isinstance(outs, torch.Tensor):
            return (outs * self._skew).to(dtype)
        # per-channel outputs (new / gradient thresholds) come back in the thresholds' dtype, as the CUDA binding does
        t_index = {"threshold_forward_reset": 1, "threshold_backward": 2}.get(name)
        t_dtype = dtype if t_index is None else args[t_index].dtype
        return ((outs[0] * self._skew).to(dtype), (outs[1] * self._skew).to(t_dtype))

    def __getattr__(self, name):
        return lambda *args: self._run(name, *args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_self_check_has_tolerances_that_fit(cpu_ext, dtype):
    good = dataclasses.replace(cpu_ext, ops=_Emulated16(cpu_ext.ops))
    assert ops.self_check(good, torch.device("cpu"), dtype=dtype) == ""
    wrong = dataclasses.replace(cpu_ext, ops=_Emulated16(cpu_ext.ops, skew=1.15))   # 15 % off: a broken kernel
    assert "differs" in ops.self_check(wrong, torch.device("cpu"), dtype=dtype)


class _TF32Like:
    """The CPU kernels with the modulated-conv results rounded to 10 mantissa bits (TF32's precision)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def modconv_weights(self, *args):
        def tf32(x):
            bits = x.contiguous().view(torch.int32)
            return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)   # round to 10 explicit mantissa bits
        return tuple(tf32(o) if o.numel() else o for o in self._real.modconv_weights(*args))


def test_tf32_settings_loosen_the_tolerance_and_key_the_cache(cpu_ext, monkeypatch):
    tf32_like = dataclasses.replace(cpu_ext, ops=_TF32Like(cpu_ext.ops))
    cpu = torch.device("cpu")
    assert "differs" in ops.self_check(tf32_like, cpu, families=("modulated_conv2d",))   # strict float32: fails
    old = torch.get_float32_matmul_precision()
    _fresh_auto(monkeypatch, tf32_like)
    try:
        torch.set_float32_matmul_precision("high")
        assert ops.self_check_tolerance("cpu", torch.float32) == ops.REDUCED_FP32_TOLERANCE
        assert ops.self_check(tf32_like, cpu, families=("modulated_conv2d",)) == ""
        assert ops.backend_for(torch.zeros(2, 3, 1, 1), "modulated_conv2d") == "native"
    finally:
        torch.set_float32_matmul_precision(old)
    with pytest.warns(RuntimeWarning, match="modulated_conv2d disagrees"):   # a new key: checked again, strictly
        assert ops.backend_for(torch.zeros(2, 3, 1, 1), "modulated_conv2d") == "reference"
    assert sorted(k[3][2] for k in ops._verified) == ["high", "highest"]


def test_modulated_conv_is_native_under_autocast_with_bf16_styles(cpu_ext, monkeypatch, rng, rel_err):
    """Styles from an autocast region arrive in bf16 next to fp32 weights: cast, not a fallback."""
    _fresh_auto(monkeypatch, cpu_ext)
    affine = torch.nn.Linear(8, 16)
    w = torch.randn(12, 16, 3, 3, generator=rng, requires_grad=True)
    z, x = torch.randn(4, 8, generator=rng), torch.randn(4, 16, 6, 6, generator=rng)
    before = ops.backend_counts()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        styles = affine(z) + 1
        assert styles.dtype == torch.bfloat16 and w.dtype == torch.float32
        y = ops.modulated_conv2d(x, w, styles, padding=1)
        _, dcoefs = ops.modulation(w, styles)
        y_ref = ref.modulated_conv2d(x, w, styles, padding=1)
    assert ops.native_shares(before) == {"modulated_conv2d": 1.0}
    assert dcoefs.dtype == torch.float32
    assert rel_err(dcoefs, ref.demodulation_coefficients(w, styles.float(), 1e-8)) < 1e-6
    assert rel_err(y, y_ref) < 1e-2
    g = torch.randn(y.shape, generator=rng)
    grads = torch.autograd.grad(y, (w, affine.weight), g, retain_graph=True)
    for a, b in zip(grads, torch.autograd.grad(y_ref, (w, affine.weight), g)):
        assert rel_err(a, b) < 2e-2
    assert any(k[3][0] and k[3][1] == torch.bfloat16 for k in ops._verified)   # checked under the caller's autocast


def test_weight_narrower_than_styles_goes_to_the_reference(cpu_ext, monkeypatch):
    _fresh_auto(monkeypatch, cpu_ext)
    w, styles = torch.randn(4, 3, 1, 1, dtype=torch.float32), torch.rand(2, 3, dtype=torch.float64) + 0.5
    _, dcoefs = ops.modulation(w, styles)
    assert dcoefs.dtype == torch.float64
    assert torch.equal(dcoefs, ref.demodulation_coefficients(w, styles, 1e-8))


# ---- no unused weight copy, shared-memory fallback, exact keep test -----------------------------------------

def test_non_fused_modulation_writes_and_saves_no_copy_of_w(cpu_ext, monkeypatch, rng):
    w = torch.randn(8, 6, 3, 3, generator=rng, requires_grad=True)
    styles = torch.rand(2, 6, generator=rng) + 0.5
    out, dcoefs = cpu_ext.ops.modconv_weights(w.detach(), None, styles, True, False, 1e-8)
    assert out.numel() == 0 and dcoefs.shape == (2, 8)
    _fresh_auto(monkeypatch, cpu_ext)
    _, d = ops.modulation(w, styles)
    saved = d.grad_fn.saved_tensors
    big = [s for s in saved if s.numel() >= w.numel()]
    assert len(big) == 1 and big[0].data_ptr() == w.data_ptr()   # only w itself is kept for the backward
    # with a mask the masked weight is still produced (the convolution reads it)
    masked, _ = cpu_ext.ops.modconv_weights(w.detach(), (w.detach() > 0).float(), styles, True, False, 1e-8)
    assert torch.equal(masked, w.detach() * (w.detach() > 0))


def test_shared_memory_limit_sends_large_shapes_to_the_reference():
    # fp32 accumulators: 4 bytes per (sample + input channel), 48 KiB per block -> 12288 in all
    assert ops.modconv_fits("cuda", torch.float32, 64, 12288 - 64)
    assert not ops.modconv_fits("cuda", torch.float32, 64, 12288 - 63)
    assert ops.modconv_fits("cuda", torch.bfloat16, 1, 12287) and not ops.modconv_fits("cuda", torch.float16, 2, 12287)
    assert ops.modconv_fits("cuda", torch.float64, 6144, 0) and not ops.modconv_fits("cuda", torch.float64, 6144, 1)
    assert ops.modconv_fits("cpu", torch.float32, 10 ** 6, 10 ** 6)   # the CPU kernel keeps no such buffer


def test_keep_test_is_exact_for_subnormal_weights(cpu_ext, monkeypatch):
    tiny = torch.finfo(torch.float32).tiny   # 1.18e-38: below it a flush-to-zero would prune the weight
    w = torch.tensor([[tiny / 4, -tiny / 8, 0.0], [tiny / 2, tiny / 4, 1.0]])
    t = torch.tensor([0.0, tiny / 4])
    out = native.ThresholdMaskedWeight.apply(cpu_ext, w, t, 0, False)
    assert torch.equal(out, ref.threshold_masked_weight(w, t))
    assert torch.equal(out, torch.tensor([[tiny / 4, -tiny / 8, 0.0], [tiny / 2, 0.0, 1.0]]))
    assert not any("fast_math" in f or "ftz" in f for f in loader.CUDA_FLAGS)


# ---- fake kernels and torch.compile ---------------------------------------------------------------------------

def test_fake_kernels_give_shapes_on_the_meta_device(cpu_ext):
    meta = dict(device="meta")
    w, t, s = torch.empty(8, 4, 3, 3, **meta), torch.empty(8, **meta), torch.empty(2, 4, **meta)
    assert cpu_ext.ops.threshold_forward(w, t, 0).shape == w.shape
    out, t_new = cpu_ext.ops.threshold_forward_reset(w, t, 0, 0.01)
    assert out.shape == w.shape and t_new.shape == t.shape
    gw, gt = cpu_ext.ops.threshold_backward(w, w, t, 0, True)
    assert gw.shape == w.shape and gt.shape == t.shape
    assert [o.shape for o in cpu_ext.ops.modconv_weights(w, None, s, True, True, 1e-8)] == [(2, 8, 4, 3, 3), (2, 8)]
    assert [o.shape for o in cpu_ext.ops.modconv_weights(w, None, s, True, False, 1e-8)] == [(0,), (2, 8)]
    assert [o.shape for o in cpu_ext.ops.modconv_weights(w, w, s, True, False, 1e-8)] == [(8, 4, 3, 3), (2, 8)]


def test_torch_compile_fullgraph_traces_the_native_ops(cpu_ext, monkeypatch, rng):
    """Compiled first (the build lookup and the self-check run eagerly, outside the trace), then compared with the
    eager call; the reset's write to t happens in the compiled graph too."""
    from torch._dynamo.testing import CompileCounterWithBackend

    _fresh_auto(monkeypatch, cpu_ext)
    w = torch.randn(8, 4, 3, 3, generator=rng, requires_grad=True)
    styles = torch.rand(2, 4, generator=rng) + 0.5

    def step(w, t, styles):
        masked = ops.threshold_masked_weight(w, t, reset_density=0.01)
        _, dcoefs = ops.modulation(masked, styles)
        return masked.square().sum() + dcoefs.sum()

    counter = CompileCounterWithBackend("aot_eager")
    compiled_step = torch.compile(step, backend=counter, fullgraph=True)
    for level in (0.3, 50.0, 0.2):   # keeps most of w / collapses (t reset to 0) / keeps most
        t_c, t_e = (torch.full((8,), level, requires_grad=True) for _ in range(2))
        before = ops.backend_counts()
        compiled = compiled_step(w, t_c, styles)
        # counted once, when traced (the first call): both op families chose the native kernels
        expected = {"threshold_masked_weight": 1.0, "modulated_conv2d": 1.0} if level == 0.3 else {}
        assert ops.native_shares(before) == expected
        eager = step(w, t_e, styles)
        assert torch.allclose(compiled, eager) and torch.equal(t_c.detach(), t_e.detach())
        assert bool((t_c == 0).all()) == (level == 50.0)
        for a, b in zip(torch.autograd.grad(compiled, (w, t_c)), torch.autograd.grad(eager, (w, t_e))):
            assert torch.allclose(a, b)
    assert counter.frame_count == 1   # one graph, no break, reused (no recompilation) by the later calls


# ---- a first build safe with several processes -----------------------------------------------------------------

def test_concurrent_first_builds_compile_once_and_publish_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path / "cache"))
    state = {"running": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    def fake_compile(kwargs):
        with guard:
            state["running"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.3)
        build_dir = tmp_path / "cache" / kwargs["build_directory"].split("/")[-1]
        assert ".partial-" in build_dir.name   # never compiled where others load from
        (build_dir / f"{kwargs['name']}.so").write_text("binary")
        with guard:
            state["running"] -= 1

    loaded = []
    monkeypatch.setattr(loader, "_compile", fake_compile)
    monkeypatch.setattr(loader, "_load_library", lambda path: loaded.append(path.read_text()))
    monkeypatch.setattr(loader, "build_hash", lambda kind, src=None: "cpu-0123456789abcdef")
    results, errors = [], []

    def rank():
        try:
            results.append(loader.build("cpu"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=rank) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 3
    assert state == {"running": 0, "most": 1, "calls": 1}
    assert loaded == ["binary"] * 3   # everyone loaded the one complete library
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["ext-cpu-0123456789abcdef", "ext-cpu-0123456789abcdef.lock"]


def test_a_failed_build_leaves_no_folder_and_the_next_one_works(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "build_hash", lambda kind, src=None: "cpu-00000000deadbeef")
    monkeypatch.setattr(loader, "_load_library", lambda path: None)

    def broken(kwargs):
        raise RuntimeError("compiler says no")

    monkeypatch.setattr(loader, "_compile", broken)
    (tmp_path / "cache" / "ext-cpu-00000000deadbeef.partial-999999").mkdir(parents=True)   # a builder that died
    with pytest.raises(loader.ExtensionBuildError, match="compiler says no"):
        loader.build("cpu")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]

    def works(kwargs):
        (tmp_path / "cache" / kwargs["build_directory"].split("/")[-1] / f"{kwargs['name']}.so").write_text("x")

    monkeypatch.setattr(loader, "_compile", works)
    assert loader.build("cpu").library_path.endswith("ext-cpu-00000000deadbeef/sparse_core_cpu_00000000deadbeef.so")
