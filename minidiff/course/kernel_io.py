"""Reading a Jupyter kernel's replies without missing one (used by the grader and tools/execute.py).

nbclient waits for a cell's reply with one asyncio poll of the shell socket for the whole
cell timeout. During an `interact(...)` cell nbclient also sends on that socket: it mirrors
the ipywidgets Output widget's state back to the kernel, through jupyter_client's
Session.send, which writes on a plain (not asyncio) shadow of the socket. Such a send can
swallow the socket's wake-up for a reply that arrives at that moment, and the waiting poll
is not told: the kernel had sent the reply within 0.2 s, the client read it only when the
poll timed out, so the cell "finished" after exactly its time limit (without a limit it
waits forever on an idle kernel; nbclient issue 312, jupyter_client PR 1059).

`poll_in_slices` makes every wait a series of short polls. Every new poll first looks at the
socket's queue, so a reply missed that way is read at the next slice, at most one slice late.
"""

from __future__ import annotations

import time
from queue import Empty

POLL_SLICE = 1.0  # seconds between two polls of a channel the client is waiting on


def poll_in_slices(channel, seconds: float = POLL_SLICE) -> None:
    """Make `channel.get_msg(timeout)` (an async jupyter_client channel) wait in polls of at most `seconds`."""
    get_msg = channel.get_msg

    async def get_msg_sliced(timeout=None):
        give_up_at = None if timeout is None else time.monotonic() + timeout
        while True:
            step = seconds if give_up_at is None else max(0.0, min(seconds, give_up_at - time.monotonic()))
            try:
                return await get_msg(timeout=step)
            except Empty:
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    raise

    channel.get_msg = get_msg_sliced


def poll_client_in_slices(kernel_client, seconds: float = POLL_SLICE) -> None:
    """`poll_in_slices` on the two channels a notebook client waits on: shell (replies) and iopub (outputs)."""
    poll_in_slices(kernel_client.shell_channel, seconds)
    poll_in_slices(kernel_client.iopub_channel, seconds)
