"""Helper processes: the SuperNode's parent-death signal, and starting children beside a busy gRPC channel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedledger.processes import dying_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

PRINT_DEATH_SIGNAL = (
    "import ctypes, os; v = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(v)); print(os.getpid(), v.value)"
)


def test_the_wrapped_command_keeps_its_pid_and_gets_sigterm_when_the_parent_dies() -> None:
    process = subprocess.run(
        dying_with_parent([sys.executable, "-c", PRINT_DEATH_SIGNAL]), capture_output=True, text=True, check=True
    )
    pid, death_signal = map(int, process.stdout.split())
    assert death_signal == signal.SIGTERM
    assert pid != os.getpid()


def test_a_child_dies_with_a_parent_killed_without_stopping_it() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; from fedledger.processes import dying_with_parent;"
            "child = subprocess.Popen(dying_with_parent(['sleep', '60']));"
            "print(child.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the trampoline has exec'd sleep
    assert os.path.exists(f"/proc/{child}")
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_children_started_while_a_grpc_channel_is_busy_all_start() -> None:
    """grpc/grpc#43055: with ``preexec_fn`` about one start in fifty died of SIGABRT before exec.

    The node agent's and the gateway client's channels are busy while ``fedledger node join``
    starts its SuperNode; a live test lost a node that way. With ``preexec_fn`` this loop failed
    4 of 200 starts on the development machine.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    calls = 0

    def keep_calling() -> None:
        nonlocal calls
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                stub.Check(health_pb2.HealthCheckRequest())
                calls += 1

    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    try:
        codes = [
            subprocess.Popen(dying_with_parent(["true"]), start_new_session=True, stderr=subprocess.DEVNULL).wait()
            for _ in range(150)
        ]
    finally:
        stop.set()
        caller.join(timeout=10)
        server.stop(grace=None)
    assert calls > 150  # the channel was busy throughout
    assert codes.count(0) == len(codes), f"{len(codes) - codes.count(0)} of {len(codes)} starts failed"
