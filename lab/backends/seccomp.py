"""A node's system-call filter (netns backend), as Docker's default profile has for its containers.

Everything a node may do is allowed but two things that would outlive or escape its confinement:
- a user namespace of its own (`unshare`/`clone` with CLONE_NEWUSER; `clone3`, whose flags a filter
  cannot read, answers ENOSYS and the C library falls back to `clone`): inside one, a process is
  root of a world it builds (mounts, a PID namespace with a pid 1 of its own) and reaches kernel
  code no unprivileged process should;
- the kernel's keyrings (`keyctl`, `add_key`, `request_key`): a uid's keyring lives as long as the
  machine, so a node could leave data there for a later lab that gets the same uid.
The filter is installed after no_new_privs, in the process that becomes the node, and inherited
by all it starts. On an architecture this module does not know, no filter is installed (the node
keeps every other part of its confinement) and `supported()` says so.
"""

from __future__ import annotations

import ctypes
import errno
import platform

from lab.backends import linux

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
CLONE_NEWUSER = 0x10000000
RET_ALLOW, RET_ERRNO, RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low word of args[0])

# machine -> (AUDIT_ARCH, {name: number})
ARCHES = {
    "x86_64": (0xC000003E, {"clone": 56, "unshare": 272, "clone3": 435, "keyctl": 250, "add_key": 248,
                            "request_key": 249}),
    "aarch64": (0xC00000B7, {"clone": 220, "unshare": 97, "clone3": 435, "keyctl": 219, "add_key": 217,
                             "request_key": 218}),
}


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def supported() -> bool:
    return platform.machine() in ARCHES


def program() -> list[tuple[int, int, int, int]]:
    """The filter, as (code, jt, jf, k) instructions (pure: the unit tests read it)."""
    arch, nr = ARCHES[platform.machine()]
    eperm, enosys = RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
    ops: list[tuple[int, int, int, int]] = [
        (LD_W_ABS, 0, 0, ARCH),
        (JEQ_K, 1, 0, arch),
        (RET_K, 0, 0, RET_KILL),  # another ABI's numbers would mean other calls
        (LD_W_ABS, 0, 0, NR),
        (JGE_K, 0, 1, 0x40000000),  # x32's numbers on x86_64
        (RET_K, 0, 0, RET_KILL),
    ]
    for name in ("keyctl", "add_key", "request_key"):
        ops += [(JEQ_K, 0, 1, nr[name]), (RET_K, 0, 0, eperm)]
    ops += [(JEQ_K, 0, 1, nr["clone3"]), (RET_K, 0, 0, enosys)]
    for name in ("unshare", "clone"):  # flags in args[0] for both
        ops += [(JEQ_K, 0, 4, nr[name]), (LD_W_ABS, 0, 0, ARG0), (JSET_K, 0, 1, CLONE_NEWUSER),
                (RET_K, 0, 0, eperm), (RET_K, 0, 0, RET_ALLOW)]
    return ops + [(RET_K, 0, 0, RET_ALLOW)]


def install() -> None:
    """Filter this process and all it starts from now on (after no_new_privs)."""
    if not supported():
        return
    ops = program()
    table = (_Filter * len(ops))(*[_Filter(*op) for op in ops])
    prog = _Program(len(ops), table)
    linux.prctl_pointer(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
