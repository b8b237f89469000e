"""Every fedledger process computes on the AVX2 code paths of torch, MKL, oneDNN, NumPy and OpenBLAS."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from fedledger.numerics import PINNED_ENV, pin_cpu_paths, unpinned

PROBE = """
import json, os
import fedledger.simulation.tasks.digits  # a module that imports torch and numpy after fedledger
import numpy, torch
from numpy._core._multiarray_umath import __cpu_features__
print(json.dumps({
    "env": {name: os.environ.get(name) for name in %r},
    "aten": torch.backends.cpu.get_cpu_capability(),
    "numpy_v4": __cpu_features__.get("X86_V4"),
}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (sorted(PINNED_ENV),)],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    return json.loads(done.stdout)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in PINNED_ENV}


def test_pinning_sets_what_is_unset_and_keeps_what_a_user_set() -> None:
    environ = {"ATEN_CPU_CAPABILITY": "default"}
    values = pin_cpu_paths(environ)
    assert values == PINNED_ENV | {"ATEN_CPU_CAPABILITY": "default"}
    assert unpinned(environ) == {"ATEN_CPU_CAPABILITY": "default"}
    assert unpinned(dict(PINNED_ENV)) == {}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the pinned paths are x86-64's")
def test_a_fresh_process_that_imports_fedledger_computes_on_avx2_paths() -> None:
    seen = probe(clean_env())
    assert seen["env"] == PINNED_ENV
    assert seen["aten"] == "AVX2"  # AVX512 on an AVX-512 machine without the pin
    assert seen["numpy_v4"] is False  # NumPy's AVX-512 loops are off
    overridden = probe(clean_env() | {"ATEN_CPU_CAPABILITY": "default"})
    assert overridden["aten"] == "DEFAULT" and overridden["env"]["ATEN_CPU_CAPABILITY"] == "default"
