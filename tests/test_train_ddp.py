"""Subprocess tests: torchrun with two CPU processes (gloo), and a real SIGTERM mid-run."""
import json
import os
import signal
import subprocess
import sys
import time


from diffmf.data.synthetic import make_synthetic_pairs
from diffmf.engine.checkpoint import load_checkpoint

COMMON = ["data.crop_size=16", "data.num_workers=0", "train.log_every=1", "train.image_every=0",
          "train.tensorboard=false"]


def env():
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def test_torchrun_two_cpu_processes_keep_identical_weights(tmp_path):
    root = make_synthetic_pairs(tmp_path / "syn", n=6, size=(20, 24))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "diffmf", "train", "diffmf_tiny", "--set", f"data.roots=[{root}]", f"out_dir={out}",
           "data.batch_size=4", "train.steps=3", "train.checkpoint_every=2", *COMMON]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    final = json.loads((out / "final_state.json").read_text())
    assert final["world_size"] == 2 and final["step"] == 3
    assert len(final["params_sha256"]) == 2 and final["ranks_in_sync"], final
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["world_size"] == 2
    log = (out / "train.log").read_text()
    assert "2 per process x 2" in log and "weights identical on all 2 ranks: True" in log


def test_sigterm_writes_a_checkpoint_and_exits_130(tmp_path):
    root = make_synthetic_pairs(tmp_path / "syn", n=4, size=(20, 24))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffmf", "train", "diffmf_tiny", "--set", f"data.roots=[{root}]", f"out_dir={out}",
           "train.steps=100000", "train.checkpoint_every=0", *COMMON]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env())
    log = out / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "step 2/" in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert 2 <= state["step"] < 100000
    assert "received SIGTERM" in log.read_text()


def test_group_sigterm_with_workers_still_checkpoints(tmp_path):
    """`timeout` and Ctrl-C signal the whole process group: data workers must not die first."""
    root = make_synthetic_pairs(tmp_path / "syn", n=4, size=(20, 24))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffmf", "train", "diffmf_tiny", "--set", f"data.roots=[{root}]", f"out_dir={out}",
           "train.steps=100000", "train.checkpoint_every=0", *COMMON, "data.num_workers=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
                            start_new_session=True)
    log = out / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "step 2/" in log.read_text()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] >= 2
