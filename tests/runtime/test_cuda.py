"""The CUDA execution context (run on the device: `pytest -m gpu tests/runtime`): every
fixture against the interpreter; numpy and device-array (torch, CuPy) inputs; two
contexts on two streams at once; CUDA-graph replay; weights shared by contexts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from ember.runtime import Engine, cuda
from ember.tolerance import assert_close

try:  # before NVRTC and the driver are loaded by the builds (torch's own CUDA libraries first)
    import torch
except ImportError:
    torch = None

FIXTURES = Path(__file__).parent.parent / "fixtures" / "onnx"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda.available()[0], reason=f"no CUDA GPU: {cuda.available()[1]}")]


def close_all(got, want, what):
    assert sorted(got) == sorted(want), what
    for k in want:
        assert_close(np.asarray(got[k]), want[k], what=f"{what}:{k}")


@pytest.mark.parametrize("name", MODELS)
def test_fixture_on_cuda_matches_the_interpreter(built, name, tmp_path):
    engine = built.engine(name)
    # Only the host fallbacks expected (gpu_check.sh fails on any other).
    expected = json.loads((Path(__file__).with_name("expected_host_ops.json")).read_text())[name]
    assert [h.split(": ", 1)[0] for h in engine.report.host_ops] == expected
    feeds, want = built.feeds(name), built.expected(name)
    close_all(engine.run(feeds, device="cuda"), want, name)
    close_all(engine.run(feeds), want, name)  # auto picks the GPU, silently
    # From the file, with the device's architecture checked on load.
    path = tmp_path / f"{name}.engine"
    engine.save(path)
    loaded = Engine.load(path)
    close_all(loaded.run(feeds, device="cuda"), want, f"{name} (loaded)")


def test_device_info_and_arch_check(built):
    info = cuda.device_info()
    assert info is not None and info["arch"].startswith("sm_") and info["driver"] >= 13000
    engine = built.engine("gpt2_small")
    engine.check_arch()  # this GPU: a cubin or the PTX fits
    ctx = engine.create_context("cuda")
    assert ctx.dev.arch == info["arch"] and len(ctx.dev.functions) == len(engine.kernels)


@pytest.mark.parametrize("name", ["gpt2_small", "bert_small", "ssdlite_small"])
def test_cuda_graph_replay_gives_the_same_results(built, name):
    engine = built.engine(name)
    feeds, want = built.feeds(name), built.expected(name)
    plain = engine.create_context("cuda", graphs=False).run(feeds)
    ctx = engine.create_context("cuda", graphs=True)
    first = ctx.run(feeds)
    captures = ctx.captures
    # one graph per segment, but for those sized at run time (after NonZero: SSDlite), launched one by one
    assert captures == len(ctx.graph_segments) and captures > 0
    second = ctx.run(feeds)
    assert ctx.captures == captures, "the second run replays, captures nothing"
    assert ctx.graph_launches == 2 * len(ctx.graph_segments)
    for k in want:
        assert_close(np.asarray(first[k]), want[k], what=f"{name}:{k}")
        assert np.array_equal(first[k], second[k], equal_nan=True)
        assert np.array_equal(first[k], plain[k], equal_nan=True)
    # New input values, same shapes: the graphs replay and see them.
    other = {k: (np.ascontiguousarray(v[..., ::-1]) if v.dtype.kind == "f" else np.roll(v, 1, axis=-1))
             for k, v in feeds.items()}
    again = ctx.run(other)
    assert ctx.captures == captures
    expect = engine.create_context("cpu").run(other)
    for k in expect:
        assert_close(np.asarray(again[k]), np.asarray(expect[k]), what=f"{name}:{k} (new inputs)")


def test_two_contexts_on_two_streams_at_once(built):
    name = "gpt2_small"
    engine = built.engine(name)
    feeds = built.feeds(name)
    inputs = [feeds, {k: np.roll(v, 3, axis=-1) for k, v in feeds.items()}]
    expected = [engine.create_context("cpu").run(x) for x in inputs]
    contexts = [engine.create_context("cuda") for _ in inputs]
    assert contexts[0].stream != contexts[1].stream
    assert contexts[0].dev is contexts[1].dev  # the weights are uploaded once, shared
    assert contexts[0].arena != contexts[1].arena
    errors: list[BaseException] = []
    results: dict[tuple[int, int], dict] = {}

    def work(i: int) -> None:
        try:
            for r in range(20):
                results[(i, r)] = contexts[i].run(inputs[i])
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (i, r), got in results.items():
        for k in expected[i]:
            assert_close(np.asarray(got[k]), np.asarray(expected[i][k]), what=f"context {i} run {r}: {k}")


def test_torch_tensors_in_give_torch_tensors_out(built):
    if torch is None:
        pytest.skip("torch is not installed")
    for name in ("gpt2_small", "vit_b_16_small", "efficientnet_b0_small"):
        engine = built.engine(name)
        feeds, want = built.feeds(name), built.expected(name)
        device_feeds = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}
        ctx = engine.create_context("cuda")
        for _ in range(2):  # the second run replays graphs with the same input pointers
            got = ctx.run(device_feeds)
            for k in want:
                assert isinstance(got[k], torch.Tensor) and got[k].is_cuda
                assert_close(got[k].cpu().numpy(), want[k], what=f"{name}:{k}")
        # On torch's stream: the outputs are ready for torch without a host synchronization.
        torch.cuda.synchronize()  # the inputs were copied on the default stream
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            side = engine.create_context("cuda", stream=stream)
            out = side.run(device_feeds)
            total = {k: (v.float() * 1).sum() for k, v in out.items()}
        torch.cuda.synchronize()
        for k in want:
            np.testing.assert_allclose(total[k].item(), want[k].astype(np.float64).sum(), rtol=1e-4, atol=1e-3)


def test_engine_run_with_torch_inputs_and_the_default_context(built):
    if torch is None:
        pytest.skip("torch is not installed")
    engine = built.engine("bert_small")
    feeds, want = built.feeds("bert_small"), built.expected("bert_small")
    got = engine.run({k: torch.from_numpy(v).cuda() for k, v in feeds.items()})
    assert got["hidden"].device.type == "cuda"
    assert_close(got["hidden"].cpu().numpy(), want["hidden"])


def test_cupy_arrays_in_give_cupy_arrays_out(built):
    cupy = pytest.importorskip("cupy")
    engine = built.engine("gpt2_small")
    feeds, want = built.feeds("gpt2_small"), built.expected("gpt2_small")
    got = engine.run({k: cupy.asarray(v) for k, v in feeds.items()}, device="cuda")
    assert isinstance(got["hidden"], cupy.ndarray)
    assert_close(cupy.asnumpy(got["hidden"]), want["hidden"])


def test_cuda_array_interface_objects_in_give_device_arrays_out(built):
    """Objects that only speak the CUDA array interface (Ember's own DeviceArray here): one
    engine's output feeds another run without leaving the GPU."""
    from ember.runtime.dlpack import DeviceArray
    engine = built.engine("vit_b_16_small")
    feeds, want = built.feeds("vit_b_16_small"), built.expected("vit_b_16_small")
    ctx = engine.create_context("cuda")
    dev = ctx.dev
    staged = {}
    for k, v in feeds.items():
        host = np.ascontiguousarray(v)
        ptr = dev.alloc(host.nbytes)
        cuda._call("cuMemcpyHtoD", ptr, host.ctypes.data, host.nbytes)
        staged[k] = DeviceArray(v.shape, engine.inputs[0].dtype, ptr, v.nbytes, None, dev.free, dev.index)
    got = ctx.run(staged)
    assert isinstance(got["logits"], DeviceArray)
    assert_close(got["logits"].numpy(), want["logits"])
    assert_close(np.asarray(got["logits"]), want["logits"])


@pytest.mark.parametrize("graphs", [False, True])
def test_launch_arguments_scratch_sharing_and_zeroing(synthetic, graphs):
    """Every argument kind reaches its kernel: f32, i32 and i64 scalars, a metadata array, and
    two scratch buffers shared by the op's two launches; the counter in scratch must be zeroed
    before each run (NaN otherwise), with and without graph replay."""
    ctx = synthetic.create_context("cuda", graphs=graphs)
    for r in range(3):
        x = np.linspace(-3, 3, 1000, dtype=np.float32) + r
        np.testing.assert_allclose(ctx.run({"x": x})["y"], x * 2, rtol=1e-6, atol=1e-5)
    assert ctx.captures == (1 if graphs else 0)
