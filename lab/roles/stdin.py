"""Scripted input for a program, like a person at its terminal (standard library only).

`feed(steps)` returns the read end of a pipe that becomes the program's stdin; a forked feeder
writes the steps into it, waiting where the scenario says, then closes it (end of input, Ctrl-D).
The feeder is in the program's process group, so it is stopped with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any


def feed(steps: Sequence[Sequence[Any]]) -> int:
    read, write = os.pipe()
    if os.fork() == 0:  # the feeder
        os.close(read)
        try:
            for kind, value in steps:
                if kind == "wait":
                    time.sleep(float(value))
                else:
                    data = str(value).encode()
                    while data:
                        data = data[os.write(write, data):]
        except OSError:
            pass  # the program closed its input, or exited: nothing more to say
        os._exit(0)
    os.close(write)
    return read
