"""minidiff.course.kernel_io: a wait is a series of short polls, so a reply that one poll missed is read by the next."""

import asyncio
import time
from queue import Empty

import pytest

from minidiff.course.kernel_io import poll_in_slices


class MissedWakeUpChannel:
    """A channel whose reply is queued at `ready_at`, but whose poll running at that moment is never woken
    (the nbclient stall): a poll only sees the reply if it starts after `ready_at`."""

    def __init__(self, ready_in: float):
        self.ready_at = time.monotonic() + ready_in
        self.polls = []

    async def get_msg(self, timeout=None):
        started = time.monotonic()
        self.polls.append(timeout)
        if started >= self.ready_at:
            return {"msg_type": "execute_reply"}
        await asyncio.sleep(timeout)  # sleeps through the reply's arrival: the missed wake-up
        raise Empty


def test_a_missed_reply_is_read_at_the_next_slice():
    ch = MissedWakeUpChannel(ready_in=0.05)
    poll_in_slices(ch, seconds=0.1)
    t0 = time.monotonic()
    msg = asyncio.run(ch.get_msg(timeout=30))
    assert msg == {"msg_type": "execute_reply"}
    assert time.monotonic() - t0 < 1.0  # one slice late, not the whole 30 s
    assert len(ch.polls) == 2 and all(p <= 0.1 for p in ch.polls)


def test_without_slices_the_same_channel_waits_the_whole_timeout():
    ch = MissedWakeUpChannel(ready_in=0.05)
    with pytest.raises(Empty):
        asyncio.run(ch.get_msg(timeout=0.3))


def test_a_reply_that_never_comes_still_times_out():
    ch = MissedWakeUpChannel(ready_in=1e9)
    poll_in_slices(ch, seconds=0.05)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ch.get_msg(timeout=0.3))
    assert 0.29 <= time.monotonic() - t0 < 1.0
