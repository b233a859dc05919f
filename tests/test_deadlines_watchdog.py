"""The one deadline mechanism: Phases scopes whose deadlines the run's Watchdog enforces.
Every phase times out at its own budget (earlier or later than the one before), a phase
that finishes in time never fires, scopes open at once (a pool, several clients, a
session's own steps) each keep their own deadline, and no client or nursery is needed."""

from __future__ import annotations

import pytest
import trio

from trio_smtp import SmtpDeliveryTimeoutError, SmtpTimeoutError
from trio_smtp._io.deadlines import Phases, Watchdog, deadline


async def test_each_phase_times_out_at_its_own_budget(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    with pytest.raises(SmtpTimeoutError, match="after 5 s waiting for MAIL"), Phases() as phases:
        phases.arm(100, "the message data", SmtpTimeoutError)
        await trio.sleep(1)
        # A shorter budget than the phase before: the wake-up moves earlier.
        phases.arm(5, "MAIL", SmtpTimeoutError)
        await trio.sleep(60)
    assert trio.current_time() - start == pytest.approx(6)


async def test_a_longer_budget_after_a_shorter_one_is_honoured(
    autojump_clock: trio.abc.Clock,
) -> None:
    start = trio.current_time()
    with pytest.raises(SmtpDeliveryTimeoutError, match="after 50 s"), Phases() as phases:
        phases.arm(5, "MAIL", SmtpTimeoutError)
        await trio.sleep(1)  # in time
        phases.arm(50, "the end of data", SmtpDeliveryTimeoutError)
        await trio.sleep(30)  # past the first budget's wake-up: not a timeout
        assert trio.current_time() - start == pytest.approx(31)
        await trio.sleep(60)
    assert trio.current_time() - start == pytest.approx(51)


async def test_phases_done_in_time_never_fire(autojump_clock: trio.abc.Clock) -> None:
    with Phases() as phases:
        for _ in range(20):  # far longer in total than any one budget
            phases.arm(5, "RCPT", SmtpTimeoutError)
            await trio.sleep(4)
        phases.arm(None, "the next message", SmtpTimeoutError)  # no limit at all
        await trio.sleep(1000)


async def test_scopes_open_at_once_each_keep_their_own_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Two connections of a pool (or two clients): one watchdog for both, each scope
    cancelled at its own phase's deadline, the other untouched."""
    start = trio.current_time()
    ended: dict[str, float] = {}

    async def transaction(name: str, budgets: list[float], pause: float) -> None:
        with pytest.raises(SmtpTimeoutError, match=name), Phases() as phases:
            for budget in budgets:
                phases.arm(budget, name, SmtpTimeoutError)
                await trio.sleep(pause)
        ended[name] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(transaction, "MAIL", [10.0, 10.0, 5.0], 8.0)  # times out at 16 + 5
        nursery.start_soon(transaction, "DATA", [3.0], 100.0)  # times out at 3
        nursery.start_soon(transaction, "RCPT", [50.0, 7.0], 20.0)  # times out at 20 + 7
    assert ended == {"MAIL": pytest.approx(21), "DATA": pytest.approx(3), "RCPT": pytest.approx(27)}


async def test_one_watchdog_per_run_and_no_deadline_on_the_scope(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A step outside any client (``deadline``) is enforced by the same run-wide task: no
    nursery of the caller's, no Trio deadline moved or set on the scope."""
    assert Watchdog.current() is Watchdog.current()
    start = trio.current_time()
    with (
        pytest.raises(SmtpTimeoutError, match="after 4 s waiting for the greeting"),
        deadline(4, "the greeting"),
    ):
        assert trio.current_effective_deadline() == float("inf")
        await trio.sleep(100)
    assert trio.current_time() - start == pytest.approx(4)
