"""The Watchdog that enforces Phases deadlines without moving them: every phase still
times out at its own budget (earlier or later than the one before), a phase that finishes
in time never fires, and stopping the watchdog never leaves a phase without a limit."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_smtp import SmtpDeliveryTimeoutError, SmtpTimeoutError
from trio_smtp._io.deadlines import Phases, Watchdog


def _phases(watchdog: Watchdog | None) -> Phases:
    return Phases(watchdog, lambda phases: None)


async def _with_watchdog(body: Any) -> Any:
    watchdog = Watchdog()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        try:
            return await body(watchdog)
        finally:
            watchdog.close()


async def test_each_phase_times_out_at_its_own_budget(autojump_clock: trio.abc.Clock) -> None:
    async def body(watchdog: Watchdog) -> float:
        start = trio.current_time()
        with (
            pytest.raises(SmtpTimeoutError, match="after 5 s waiting for MAIL"),
            _phases(watchdog) as phases,
        ):
            phases.arm(100, "the message data", SmtpTimeoutError)
            await trio.sleep(1)
            # A shorter budget than the phase before: the wake-up moves earlier.
            phases.arm(5, "MAIL", SmtpTimeoutError)
            await trio.sleep(60)
        return trio.current_time() - start

    elapsed = await _with_watchdog(body)
    assert elapsed == pytest.approx(6)


async def test_a_longer_budget_after_a_shorter_one_is_honoured(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def body(watchdog: Watchdog) -> float:
        start = trio.current_time()
        with (
            pytest.raises(SmtpDeliveryTimeoutError, match="after 50 s"),
            _phases(watchdog) as phases,
        ):
            phases.arm(5, "MAIL", SmtpTimeoutError)
            await trio.sleep(1)  # in time
            phases.arm(50, "the end of data", SmtpDeliveryTimeoutError)
            await trio.sleep(30)  # past the first budget's wake-up: not a timeout
            assert trio.current_time() - start == pytest.approx(31)
            await trio.sleep(60)
        return trio.current_time() - start

    assert await _with_watchdog(body) == pytest.approx(51)


async def test_phases_done_in_time_never_fire(autojump_clock: trio.abc.Clock) -> None:
    async def body(watchdog: Watchdog) -> None:
        with _phases(watchdog) as phases:
            for _ in range(20):  # far longer in total than any one budget
                phases.arm(5, "RCPT", SmtpTimeoutError)
                await trio.sleep(4)
            phases.arm(None, "the next message", SmtpTimeoutError)  # no limit at all
            await trio.sleep(1000)

    await _with_watchdog(body)


async def test_stopping_the_watchdog_hands_the_deadline_to_the_scope(
    autojump_clock: trio.abc.Clock,
) -> None:
    watchdog = Watchdog()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        with pytest.raises(SmtpTimeoutError, match="DATA"), _phases(watchdog) as phases:
            phases.arm(10, "DATA", SmtpTimeoutError)
            await trio.sleep(1)
            watchdog.close()  # e.g. the client closing while this send runs
            await trio.sleep(100)
    assert trio.current_time() - start == pytest.approx(10)
    assert not watchdog.running


async def test_a_cancelled_watchdog_leaves_no_phase_unlimited(
    autojump_clock: trio.abc.Clock,
) -> None:
    watchdog = Watchdog()
    watchdog_scope = trio.CancelScope()

    async def run_watchdog() -> None:
        with watchdog_scope:
            await watchdog.run()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_watchdog)
        with pytest.raises(SmtpTimeoutError, match="MAIL"), _phases(watchdog) as phases:
            phases.arm(10, "MAIL", SmtpTimeoutError)
            await trio.sleep(1)
            watchdog_scope.cancel()  # the watchdog's task dies, this phase goes on
            await trio.sleep(100)
    assert trio.current_time() - start == pytest.approx(10)
    assert not watchdog.running


async def test_without_a_watchdog_phases_move_their_own_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    start = trio.current_time()
    with pytest.raises(SmtpTimeoutError, match="MAIL"), _phases(None) as phases:
        phases.arm(100, "the message data", SmtpTimeoutError)
        phases.arm(5, "MAIL", SmtpTimeoutError)
        await trio.sleep(60)
    assert trio.current_time() - start == pytest.approx(5)
