"""The transition table, its typed events, and the table-driven SessionState."""

from __future__ import annotations

import pytest

from trio_smtp.protocol import (
    EVENTS,
    TRANSITIONS,
    Bdat,
    Data,
    Ehlo,
    EndOfData,
    LocalProtocolError,
    Mail,
    Outcome,
    Rcpt,
    RemoteProtocolError,
    Replied,
    Sent,
    Signal,
    State,
    Step,
)
from trio_smtp.protocol._state import SessionState, command_step

S = State


def sends_in(state: State) -> set[Step]:
    return {e.step for (s, e) in TRANSITIONS if s is state and isinstance(e, Sent)}


def test_table_is_plain_typed_data() -> None:
    # Every key is (State, event) with an event of one of the three kinds: no strings to
    # slice apart ("reply:MAIL:ok" was one).
    for (state, event), target in TRANSITIONS.items():
        assert isinstance(state, State) and isinstance(target, State)
        assert isinstance(event, (Sent, Replied, Signal)), event
        assert event in EVENTS
        if isinstance(event, Sent):
            assert isinstance(event.step, Step)
        if isinstance(event, Replied):
            assert isinstance(event.step, Step) and isinstance(event.outcome, Outcome)
    assert set(EVENTS) == {event for _, event in TRANSITIONS}


def test_events_are_values() -> None:
    # Events compare and hash by value: a new Replied(MAIL, OK) finds the table's entry.
    assert TRANSITIONS[(S.READY, Replied(Step.MAIL, Outcome.OK))] is S.MAIL
    assert TRANSITIONS[(S.READY, Sent(Step.MAIL))] is S.MAIL
    assert repr(Replied(Step.MAIL, Outcome.OK)) == "Replied(MAIL, OK)"
    assert repr(Sent(Step.DATA)) == "Sent(DATA)"


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
        assert sends_in(state) == set(), state


def test_every_state_can_fail() -> None:
    for state in State:
        assert TRANSITIONS[(state, Signal.ERROR)] is S.ERROR


def test_only_message_data_in_data_state() -> None:
    assert sends_in(S.DATA) == {Step.MESSAGE, Step.END_OF_DATA}


def test_only_auth_responses_during_auth() -> None:
    assert sends_in(S.AUTH) == {Step.AUTH_RESPONSE}


def test_refused_session_allows_only_quit() -> None:
    assert sends_in(S.REFUSED) == {Step.QUIT}


def test_command_steps() -> None:
    assert command_step(Ehlo("x")) is Step.EHLO
    assert command_step(Bdat(b"x")) is Step.BDAT
    assert command_step(Bdat(b"x", last=True)) is Step.BDAT_LAST
    assert command_step(EndOfData()) is Step.END_OF_DATA


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (220, S.GREETED),
        (250, S.GREETED),
        (421, S.CLOSED),
        (450, S.REFUSED),
        (554, S.REFUSED),
    ],
)
def test_greeting_reply_codes(code: int, state: State) -> None:
    session = SessionState()
    assert session.replied(code) is None  # the greeting has no command
    assert session.state is state


def send(session: SessionState, command: object) -> None:
    assert isinstance(command, (Ehlo, Mail, Rcpt, Data))
    step = command_step(command)
    session.sent(command, step, session.check_send(step))


def ready_session() -> SessionState:
    session = SessionState()
    session.replied(220)
    send(session, Ehlo("x"))
    session.replied(250)
    assert session.state is S.READY and not session.pending
    return session


def test_send_out_of_order_is_local_error() -> None:
    session = SessionState()
    with pytest.raises(LocalProtocolError, match="CONNECTED"):
        session.check_send(Step.EHLO)
    session = ready_session()
    for step in (Step.RCPT, Step.DATA, Step.BDAT, Step.AUTH_RESPONSE, Step.END_OF_DATA):
        with pytest.raises(LocalProtocolError, match=f"cannot send {step.value} in state READY"):
            session.check_send(step)
    with pytest.raises(LocalProtocolError):
        session.check_send(Step.MESSAGE)


def test_unexpected_reply_is_remote_error() -> None:
    session = ready_session()
    send(session, Mail("a@b.example"))
    with pytest.raises(RemoteProtocolError, match="unexpected 'more' reply to MAIL"):
        session.replied(354)  # 354 answering MAIL


def test_reply_with_nothing_pending_is_remote_error() -> None:
    session = ready_session()
    with pytest.raises(RemoteProtocolError, match="no command pending"):
        session.replied(250)


ENVELOPE = (Mail("a@b.example"), Rcpt("c@d.example"), Rcpt("e@f.example"), Data())


def test_one_queue_holds_each_command_and_its_expected_state() -> None:
    session = ready_session()
    for command in ENVELOPE:
        send(session, command)
    assert [entry.command for entry in session.pending] == list(ENVELOPE)
    assert [entry.after for entry in session.pending] == [S.MAIL, S.RCPT, S.RCPT, S.RCPT]
    assert (session.state, session.expected) == (S.READY, S.RCPT)
    answered = []
    confirmed = []
    for code in (250, 550, 250, 354):  # MAIL, RCPT refused, RCPT, DATA
        answered.append(session.replied(code))
        confirmed.append(session.state)
    assert answered == list(ENVELOPE)  # each reply is matched to its command, in order
    assert confirmed == [S.MAIL, S.MAIL, S.RCPT, S.DATA]
    assert session.expected is S.DATA and not session.pending


def test_failed_mail_in_a_pipeline_reprojects_the_queue() -> None:
    session = ready_session()
    send(session, Mail("a@b.example"))
    send(session, Rcpt("c@d.example"))
    assert (session.state, session.expected) == (S.READY, S.RCPT)
    session.replied(550)  # MAIL refused: the RCPT in flight will be refused too
    assert (session.state, session.expected) == (S.READY, S.READY)
    assert [entry.after for entry in session.pending] == [S.READY]
    with pytest.raises(LocalProtocolError):
        session.check_send(Step.DATA)
    session.check_send(Step.MAIL)


def test_all_recipients_refused_but_354() -> None:
    # Rule 6: a 354 is honoured even after every RCPT failed; we then send the terminator.
    session = ready_session()
    for command in (Mail("a@b.example"), Rcpt("c@d.example"), Data()):
        send(session, command)
    session.replied(250)
    session.replied(550)
    session.replied(354)
    assert session.state is S.DATA


def test_closing_from_anywhere_empties_the_queue() -> None:
    session = ready_session()
    mail = Mail("a@b.example")
    send(session, mail)
    send(session, Rcpt("c@d.example"))
    assert session.replied(421) == mail  # the 421 answers MAIL, and ends everything
    assert session.state is S.CLOSED and session.expected is S.CLOSED
    assert not session.pending
