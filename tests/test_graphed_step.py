"""The CUDA-graphed training step (:mod:`diffmf.engine.graphed_step`).

On the CPU: the ``train.cuda_graph`` switch and the eager twin. On a GPU (skipped without CUDA
and under Triton's interpreter; run ``TRITON_INTERPRET=0 python -m pytest
tests/test_graphed_step.py``): graphed training matches eager training bit for bit with
deterministic algorithms, in float32, bf16 and fp16 (grad scaler), and an interrupted and
resumed graphed run matches an uninterrupted one.
"""
import copy
import os
from pathlib import Path

import pytest
import torch

from diffmf.data.synthetic import make_synthetic_pairs
from diffmf.engine.checkpoint import load_checkpoint
from diffmf.engine.graphed_step import GraphedTrainStep, resolve_cuda_graph
from diffmf.engine.trainer import Trainer, params_digest
from diffmf.losses.fusion import FusionLoss

from test_train import tiny as tiny_train_config  # tests/ is on sys.path (pytest's rootdir-less test modules)

cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="CUDA graphs need a CUDA GPU and compiled kernels (on a GPU: TRITON_INTERPRET=0 python -m pytest "
           "tests/test_graphed_step.py)",
)


@pytest.fixture(autouse=True)
def _restore_determinism():
    """``train.deterministic`` switches a process-wide flag; give it back."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_the_switch_says_why_it_cannot_graph():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_cuda_graph("off", gpu, compiled=False) is False
    assert resolve_cuda_graph("auto", gpu, compiled=False) is True
    assert resolve_cuda_graph("on", gpu, compiled=False) is True
    assert resolve_cuda_graph("auto", cpu, compiled=False) is False
    assert resolve_cuda_graph("auto", gpu, compiled=True) is False
    assert resolve_cuda_graph(True, gpu, compiled=False) is True and resolve_cuda_graph(False, gpu, compiled=False) is False
    with pytest.raises(ValueError, match="need a CUDA device, the run is on cpu"):
        resolve_cuda_graph("on", cpu, compiled=False)
    with pytest.raises(ValueError, match="torch.compile"):
        resolve_cuda_graph("on", gpu, compiled=True)
    with pytest.raises(ValueError, match="auto, on or off"):
        resolve_cuda_graph("yes", gpu, compiled=False)


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    return make_synthetic_pairs(tmp_path_factory.mktemp("syn"), n=6, size=(40, 44))


def tiny(out: Path, root: Path, *extra: str):
    """The CPU training tests' tiny-preset config, on 32x32 crops."""
    return tiny_train_config(out, root, "data.crop_size=32", *extra)


def test_trainer_on_the_cpu_refuses_cuda_graph_on(tmp_path, pairs_root):
    with pytest.raises(ValueError, match="train.cuda_graph=on"):
        Trainer(tiny(tmp_path / "run", pairs_root, "train.device=cpu", "train.cuda_graph=on"))


def test_cpu_steps_run_the_eager_twin():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 1, 3, padding=1)
    fn = FusionLoss()
    params = list(net.parameters())
    step = GraphedTrainStep(lambda a, b: torch.sigmoid(net(torch.cat([a, b], 1))), fn, params, autocast=None)
    ir, vi = torch.rand(2, 1, 12, 13), torch.rand(2, 1, 12, 13)
    for p in params:
        p.grad = torch.full_like(p, 7.0)  # stale gradients must be replaced, not added to
    parts, fused, ir_d, vi_d = step(ir, vi)
    got = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    loss, ref_parts = fn(torch.sigmoid(net(torch.cat([ir, vi], 1))), ir, vi)
    loss.backward()
    for g, p in zip(got, params):
        assert torch.equal(g, p.grad)
    assert torch.equal(parts["loss"], ref_parts["loss"]) and fused.shape == ir.shape
    assert torch.equal(ir_d, ir) and torch.equal(vi_d, vi)
    assert step.replays == 0


@cuda
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_graphed_training_matches_eager_training(tmp_path, pairs_root, amp):
    runs = {}
    for mode in ("off", "on"):
        cfg = tiny(tmp_path / mode, pairs_root, "train.steps=5", "train.device=cuda", f"train.amp={amp}",
                   "train.deterministic=true", f"train.cuda_graph={mode}")
        trainer = Trainer(cfg)
        trainer.fit()
        runs[mode] = trainer
    eager, graphed = runs["off"], runs["on"]
    assert not eager.fwd_bwd.graphs and eager.fwd_bwd.replays == 0
    assert graphed.fwd_bwd.graphs and graphed.fwd_bwd.enabled and graphed.fwd_bwd.replays == 5
    assert [h["loss"] for h in eager.history] == [h["loss"] for h in graphed.history]
    assert params_digest(eager.model) == params_digest(graphed.model)
    assert params_digest(eager.ema.module) == params_digest(graphed.ema.module)


@cuda
def test_interrupted_and_resumed_graphed_run_is_bit_identical(tmp_path, pairs_root):
    def cfg(out, *extra):
        return tiny(out, pairs_root, "train.steps=6", "train.device=cuda", "train.amp=bf16", "train.deterministic=true",
                    "train.cuda_graph=on", *extra)

    full = Trainer(cfg(tmp_path / "full"))
    full.fit()

    def interrupt(trainer, step):
        if step == 4:
            trainer.request_stop()

    assert Trainer(cfg(tmp_path / "split"), on_step=interrupt).fit()["step"] == 4
    second = Trainer(cfg(tmp_path / "split"))
    assert second.step == 4 and second.fit()["step"] == 6
    assert params_digest(full.model) == params_digest(second.model)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")
    for key in ("step", "epoch", "batch_in_epoch"):
        assert a[key] == b[key], key
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def _conv_step(**kwargs):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 1, 3, padding=1).cuda()
    params = list(net.parameters())
    return net, params, GraphedTrainStep(lambda a, b: torch.sigmoid(net(torch.cat([a, b], 1))), FusionLoss(), params,
                                         autocast=None, **kwargs)


def _eager_grads(net, ir, vi):
    """Reference gradients from a copy of ``net`` (the graphed step's ``param.grad`` tensors
    must not be touched)."""
    twin = copy.deepcopy(net)
    loss, _ = FusionLoss()(torch.sigmoid(twin(torch.cat([ir, vi], 1))), ir, vi)
    loss.backward()
    return [p.grad for p in twin.parameters()]


@cuda
def test_replays_and_other_shapes_give_the_eager_gradients():
    net, params, step = _conv_step()
    shapes = [(2, 1, 24, 20), (2, 1, 24, 20), (3, 1, 17, 23), (2, 1, 24, 20)]  # capture, replay, eager, replay
    grads = None
    for shape in shapes:
        ir, vi = torch.rand(shape), torch.rand(shape)
        step(ir, vi)
        if grads is None:
            grads = [p.grad for p in params]
        assert all(p.grad is g for p, g in zip(params, grads))  # the graph's tensors stay in place
        for g, w in zip(grads, _eager_grads(net, ir.cuda(), vi.cuda())):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert step.replays == 3  # the odd shape ran eagerly


@cuda
def test_a_failed_capture_falls_back_or_raises(caplog):
    def syncing(a, b, net):
        if float(a.sum()) < -1:  # a host synchronisation: not allowed while capturing
            raise AssertionError
        return torch.sigmoid(net(torch.cat([a, b], 1)))

    for strict in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Conv2d(2, 1, 3, padding=1).cuda()
        step = GraphedTrainStep(lambda a, b: syncing(a, b, net), FusionLoss(), list(net.parameters()), autocast=None,
                                strict=strict)
        ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        if strict:
            with pytest.raises(RuntimeError, match="train.cuda_graph=on"):
                step(ir, vi)
        else:
            with caplog.at_level("WARNING"):
                parts, *_ = step(ir, vi)
            assert "training eagerly from now on" in caplog.text and not step.enabled
            assert torch.isfinite(parts["loss"]) and all(p.grad is not None for p in net.parameters())
        # The process goes on: random draws and new captures work after the failed capture.
        assert torch.rand(3, device="cuda").shape == (3,)
        x = torch.ones(4, device="cuda")
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = x * torch.rand(4, device="cuda")
        g.replay()
        assert bool((y >= 0).all())


@pytest.mark.skipif(torch.cuda.device_count() < 2 or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="needs 2 CUDA GPUs and compiled kernels")
def test_two_gpus_graphed_match_ddp(tmp_path, pairs_root):
    """torchrun on 2 GPUs: graphed steps (one flat all-reduce) end with the weights of DDP."""
    import json
    import subprocess
    import sys

    digests = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "diffmf",
               "train", "diffmf_tiny", "--set", f"data.roots=[{pairs_root}]", f"out_dir={out}", "data.crop_size=32",
               "data.batch_size=4", "data.num_workers=0", "train.steps=5", "train.checkpoint_every=0",
               "train.image_every=0", "train.tensorboard=false", "train.amp=bf16", "train.deterministic=true",
               f"train.cuda_graph={mode}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        final = json.loads((out / "final_state.json").read_text())
        assert final["ranks_in_sync"] and final["step"] == 5, final
        digests[mode] = final["params_sha256"][0]
        assert ("CUDA-graphed steps" in (out / "train.log").read_text()) == (mode == "on")
    assert digests["on"] == digests["off"]


@cuda
@pytest.mark.parametrize("graph", ["off", "on"])
def test_compiling_ahead_changes_nothing_in_training(tmp_path, pairs_root, monkeypatch, graph):
    """The precompile dry run (diffmf.ops.triton.precompile) puts back the gradients and the
    random states: a run with it equals a run without it, drop-path randomness included."""
    from diffmf.ops.triton import precompile as P

    # A DIFFMF_* setting of its own: no marker of an earlier run (this test's other case
    # launches the same kernels) lets the dry step be skipped.
    monkeypatch.setenv("DIFFMF_TEST_MARKER", str(tmp_path))
    dry_runs = []
    record = P.record
    monkeypatch.setattr(P, "record", lambda call: dry_runs.append(1) or record(call))
    runs = {}
    for threads in ("4", "0"):
        monkeypatch.setenv("DIFFMF_COMPILE_THREADS", threads)
        cfg = tiny(tmp_path / threads, pairs_root, "train.steps=3", "train.device=cuda", "train.amp=bf16",
                   "train.deterministic=true", f"train.cuda_graph={graph}", "model.drop_path=0.2")
        trainer = Trainer(cfg)
        trainer.fit()
        runs[threads] = (trainer, torch.cuda.get_rng_state(), len(dry_runs))
    (a, rng_a, dry_a), (b, rng_b, dry_b) = runs["4"], runs["0"]
    assert dry_a == 1 and dry_b == 1  # one dry step with 4 threads, none with 0
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert params_digest(a.model) == params_digest(b.model)
    assert torch.equal(rng_a, rng_b)
