"""GPU and host claims (lock files), and which GPUs a job may see: pure functions and real locks."""

import pytest

from ela import ElaError
from ela.measure.gpu_pool import choose, claim, visible_uuids


def test_concurrent_claims_get_different_gpus(tmp_path):
    pool = ["gpu-a", "gpu-b"]
    with claim(pool, lock_dir=tmp_path) as first, claim(pool, lock_dir=tmp_path) as second:
        assert {first, second} == {0, 1}
        with pytest.raises(TimeoutError), claim(pool, tmp_path, poll_s=0.01, timeout_s=0.05):
            pass
    with claim(["gpu-a", "gpu-b"], lock_dir=tmp_path) as again:
        assert again == 0  # released at the end of the job


def test_a_waiter_never_erases_the_holders_pid_and_is_told_who_holds_it(tmp_path):
    import os

    from ela.measure.gpu_pool import other_holders

    told = []
    with claim(["gpu-a"], lock_dir=tmp_path, owner="fp16-b8-s0"):
        before = (tmp_path / "gpu-a.lock").read_text()
        assert before.startswith(f"pid {os.getpid()} on ") and before.strip().endswith(" fp16-b8-s0")
        with pytest.raises(TimeoutError), claim(["gpu-a"], tmp_path, poll_s=0.01, timeout_s=0.05, on_wait=told.append):
            pass
        assert (tmp_path / "gpu-a.lock").read_text() == before  # the waiter opened it without truncating
        assert told == [[before.strip()]]  # once, with what the holder wrote (pid and host)
        assert other_holders(tmp_path) == 0  # this process's own lock is not another job
    # Another process holding a lock is counted.
    import subprocess
    import sys

    code = (
        "import sys, time; from pathlib import Path; from ela.measure.gpu_pool import claim\n"
        "with claim(['gpu-b'], lock_dir=Path(sys.argv[1]), owner='other'):\n"
        "    print('held', flush=True); time.sleep(60)"
    )
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert other_holders(tmp_path) == 1 and other_holders(tmp_path, mine="gpu-b") == 0
    finally:
        other.kill()
        other.wait()
    assert other_holders(tmp_path) == 0


HOST = ["GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2"]


@pytest.mark.parametrize(
    ("env", "visible"),
    [
        (None, HOST),
        ("2,0", ["GPU-cccc-2", "GPU-aaaa-0"]),
        ("GPU-bbbb", ["GPU-bbbb-1"]),  # a unique UUID prefix, as CUDA accepts
        ("bbbb-1", ["GPU-bbbb-1"]),
        ("1,7,0", ["GPU-bbbb-1"]),  # CUDA stops at the first invalid entry
        ("", []),
    ],
)
def test_visible_gpus_follow_cuda_visible_devices(env, visible):
    assert visible_uuids(env, HOST) == visible


def test_gpus_list_picks_cuda_indices_and_names_a_missing_one():
    assert choose("all", HOST[:2]) == HOST[:2]
    assert choose([1], HOST) == ["GPU-bbbb-1"]
    with pytest.raises(ElaError, match=r"gpus=\[0, 3\]: no CUDA GPU \[3\] here \(3 visible\)"):
        choose([0, 3], HOST)


def test_no_visible_gpu_is_an_error_not_an_endless_wait(tmp_path):
    with pytest.raises(ElaError, match="no GPU is visible to this job"):
        choose("all", [])  # e.g. submitit's local executor with gpus_per_node=0 sets CUDA_VISIBLE_DEVICES=""
    with pytest.raises(ElaError, match="nothing to claim"), claim([], lock_dir=tmp_path):
        pass
