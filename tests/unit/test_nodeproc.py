"""A node's process keeps no descriptor of the lab's but those it is given."""

from __future__ import annotations

import json
import os
import resource

from lab.backends.nodeproc import close_all_but


def test_a_child_keeps_only_the_descriptors_it_is_given_however_high() -> None:
    opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
    highest = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1
    high = os.dup2(opened[0], highest, inheritable=False)  # the highest this process may have
    keep = [opened[1], opened[3]]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: close, then say what is left (listing opens one more: excluded)
        try:
            close_all_but([*keep, w])
            left = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            os.write(w, json.dumps(left).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        for fd in [*opened, high, r]:
            os.close(fd)
    left = set(json.loads(data)) - {0, 1, 2}
    assert keep[0] in left and keep[1] in left
    assert not left & {opened[0], opened[2], opened[4], high, r}
    assert len(left - {*keep, w}) <= 1  # (at most the listing's own descriptor)
