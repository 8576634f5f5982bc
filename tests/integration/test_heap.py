"""heap.keep_heap_small, in a real process: glibc's own report (malloc_info) of its arenas and
of the blocks it mapped on their own, after threads allocated and a 300 KB block was taken."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys

import pytest

try:
    ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    GLIBC = True
except AttributeError:
    GLIBC = False

pytestmark = pytest.mark.skipif(not GLIBC, reason="malloc here is not glibc's")

# Run in a fresh interpreter: the settings must come before threads first allocate.
PROBE = r"""
import ctypes, os, sys, tempfile, threading
from rpi_braze_sync.heap import keep_heap_small
print("set" if keep_heap_small() else "unset")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

def report():
    path = tempfile.mktemp()
    handle = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    return text.replace("\n", " ")

held = []
threads = [threading.Thread(target=lambda: held.append(libc.malloc(64))) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.free(libc.malloc(300_000))  # (glibc would now raise its threshold above 300 KB)
print(report())
held.append(libc.malloc(300_000))
print(report())
"""


def probe(**env: str) -> tuple[str, int, int]:
    """(set or unset, arenas, whether the second 300 KB block was mapped on its own: 1 or 0)
    in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    verdict, before, after = out.splitlines()[:3]
    arenas = len(re.findall(r"<heap nr=", after))
    mapped = [re.findall(r'<total type="mmap" count="(\d+)"', text) for text in (before, after)]
    assert len(mapped[0]) == len(mapped[1]) == 1, out
    return verdict, arenas, int(mapped[1][0]) - int(mapped[0][0])


def test_one_arena_and_large_blocks_mapped_on_their_own() -> None:
    verdict, arenas, mapped = probe()
    assert verdict == "set"
    assert arenas == 1  # four threads allocated: each would have had its own
    # The second 300 KB block: glibc's own threshold (128 KB at first) rises each time a block
    # mapped on its own is freed, and the second would come from the arena's heap.
    assert mapped == 1


def test_the_operators_settings_win() -> None:
    verdict, arenas, mapped = probe(MALLOC_ARENA_MAX="3")
    assert verdict == "unset"
    assert arenas > 1  # as the operator asked, not one
    assert mapped == 0  # glibc's threshold, raised: the second block came from the heap
    assert probe(GLIBC_TUNABLES="glibc.malloc.arena_max=2")[0] == "unset"
