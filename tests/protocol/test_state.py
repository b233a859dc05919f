"""The transition table and the table-driven SessionState."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    EVENTS,
    TRANSITIONS,
    Bdat,
    Ehlo,
    EndOfData,
    LocalProtocolError,
    RemoteProtocolError,
    State,
)
from trio_smtp.protocol._state import SessionState, event_name, reply_outcome

S = State


def test_table_is_well_formed() -> None:
    for (state, event), target in TRANSITIONS.items():
        assert isinstance(state, State) and isinstance(target, State)
        assert event in EVENTS
        assert event.startswith(("send:", "reply:")) or event in ("start_tls", "eof", "error")


def test_every_state_is_reachable_from_connected() -> None:
    reached, frontier = {S.CONNECTED}, [S.CONNECTED]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)


def test_nothing_can_be_sent_when_closed_or_in_error() -> None:
    for state in (S.CLOSED, S.ERROR, S.CONNECTED, S.STARTTLS):
        sends = [event for (s, event) in TRANSITIONS if s is state and event.startswith("send:")]
        assert sends == [], state


def test_every_state_can_fail() -> None:
    for state in State:
        assert TRANSITIONS[(state, "error")] is S.ERROR


def test_only_message_data_in_data_state() -> None:
    sends = {event for (s, event) in TRANSITIONS if s is S.DATA and event.startswith("send:")}
    assert sends == {"send:MESSAGE", "send:END_OF_DATA"}


def test_only_auth_responses_during_auth() -> None:
    sends = {event for (s, event) in TRANSITIONS if s is S.AUTH and event.startswith("send:")}
    assert sends == {"send:AUTH_RESPONSE"}


def test_refused_session_allows_only_quit() -> None:
    sends = {event for (s, event) in TRANSITIONS if s is S.REFUSED and event.startswith("send:")}
    assert sends == {"send:QUIT"}


def test_event_names() -> None:
    assert event_name(Ehlo("x")) == "EHLO"
    assert event_name(Bdat(b"x")) == "BDAT"
    assert event_name(Bdat(b"x", last=True)) == "BDAT_LAST"
    assert event_name(EndOfData()) == "END_OF_DATA"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (220, "ok"),
        (250, "ok"),
        (334, "more"),
        (354, "more"),
        (421, "closing"),
        (450, "fail"),
        (503, "fail"),
        (554, "fail"),
    ],
)
def test_reply_outcome(code: int, outcome: str) -> None:
    assert reply_outcome(code) == outcome


def ready_session() -> SessionState:
    session = SessionState()
    session.replied("ok")
    session.check_send("EHLO")
    session.sent("EHLO")
    session.replied("ok")
    assert session.state is S.READY
    return session


def test_send_out_of_order_is_local_error() -> None:
    session = SessionState()
    with pytest.raises(LocalProtocolError, match="CONNECTED"):
        session.check_send("EHLO")
    session = ready_session()
    for name in ("RCPT", "DATA", "BDAT", "AUTH_RESPONSE", "END_OF_DATA", "MESSAGE"):
        with pytest.raises(LocalProtocolError):
            session.check_send(name)


def test_unexpected_reply_is_remote_error() -> None:
    session = ready_session()
    session.sent("MAIL")
    with pytest.raises(RemoteProtocolError):
        session.replied("more")  # 354 answering MAIL


def test_pipelined_transaction_expected_vs_confirmed() -> None:
    session = ready_session()
    for name in ("MAIL", "RCPT", "RCPT", "DATA"):
        session.check_send(name)
        session.sent(name)
    assert (session.state, session.expected) == (S.READY, S.RCPT)
    confirmed = []
    for outcome in ("ok", "fail", "ok", "more"):  # MAIL, RCPT refused, RCPT, DATA
        session.replied(outcome)
        confirmed.append(session.state)
    assert confirmed == [S.MAIL, S.MAIL, S.RCPT, S.DATA]
    assert session.expected is S.DATA


def test_failed_mail_in_a_pipeline_reprojects() -> None:
    session = ready_session()
    session.sent("MAIL")
    session.sent("RCPT")
    assert (session.state, session.expected) == (S.READY, S.RCPT)
    session.replied("fail")  # MAIL refused: the RCPT in flight will be refused too
    assert (session.state, session.expected) == (S.READY, S.READY)
    with pytest.raises(LocalProtocolError):
        session.check_send("DATA")
    session.check_send("MAIL")


def test_all_recipients_refused_but_354() -> None:
    # Rule 6: a 354 is honoured even after every RCPT failed; we then send the terminator.
    session = ready_session()
    for name in ("MAIL", "RCPT", "DATA"):
        session.sent(name)
    session.replied("ok")
    session.replied("fail")
    session.replied("more")
    assert session.state is S.DATA


def test_closing_from_anywhere() -> None:
    session = ready_session()
    session.sent("MAIL")
    session.replied("closing")
    assert session.state is S.CLOSED and session.expected is S.CLOSED
