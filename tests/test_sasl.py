"""SASL mechanisms: RFC vectors, a scramp server for SCRAM end to end, and the exchange rules
(deferred initial responses, round caps, error challenges, no secrets in repr)."""

from __future__ import annotations

import base64

import pytest
import scramp
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_smtp.protocol import Auth
from trio_smtp.sasl._mechanisms import (
    CramMd5,
    Login,
    Mechanism,
    OAuthBearer,
    Plain,
    SaslError,
    ScramSha1,
    ScramSha256,
    XOAuth2,
    choose_mechanism,
    choose_oauth_mechanism,
    decode_challenge,
    password_mechanisms,
)

# ---------------------------------------------------------------- AUTH line and helpers


def test_auth_command_carries_short_initial_response() -> None:
    # RFC 4616 §4 example.
    command = Plain("tim", "tanstaaftanstaaf").auth_command()
    assert command == Auth("PLAIN", b"\0tim\0tanstaaftanstaaf")
    assert command.to_bytes() == b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"


def test_initial_response_too_long_for_the_line_waits_for_334() -> None:
    mech = XOAuth2("someone@example.com", "t" * 600)
    command = mech.auth_command()
    assert command == Auth("XOAUTH2")  # RFC 4954 §4: the line must fit in 512 octets
    assert len(command.to_bytes()) <= 512
    first = mech.respond(b"")
    assert first == b"user=someone@example.com\x01auth=Bearer " + b"t" * 600 + b"\x01\x01"
    # The deferred response does not use up the one error round.
    assert mech.respond(b'{"status":"401"}') == b""
    with pytest.raises(SaslError):
        mech.respond(b'{"status":"401"}')


def test_decode_challenge() -> None:
    assert decode_challenge("VXNlcm5hbWU6") == b"Username:"
    assert decode_challenge("") == b""
    with pytest.raises(SaslError):
        decode_challenge("not base64!")
    with pytest.raises(SaslError):
        decode_challenge("VXNlcm5hbWU6é")


# ---------------------------------------------------------------- PLAIN, LOGIN, CRAM-MD5


def test_plain_with_authzid() -> None:
    # RFC 4616 §4 example: Ursel authenticates as Kurt.
    mech = Plain("Kurt", "xipj3plmq", authzid="Ursel")
    assert mech.auth_command().initial_response == b"Ursel\0Kurt\0xipj3plmq"


def test_plain_refuses_any_challenge_after_its_response() -> None:
    mech = Plain("tim", "pw")
    mech.auth_command()
    with pytest.raises(SaslError):
        mech.respond(b"")


@pytest.mark.parametrize("field", ["username", "password", "authzid"])
def test_plain_refuses_nul_before_sending(field: str) -> None:
    kwargs = {"username": "u", "password": "p", "authzid": ""}
    kwargs[field] = "a\0b"
    with pytest.raises(ValueError):
        Plain(**kwargs)


def test_login_answers_by_challenge_case_insensitively() -> None:
    mech = Login("alice", "s3cret")
    assert mech.auth_command() == Auth("LOGIN")
    assert mech.respond(b"username:") == b"alice"
    assert mech.respond(b"PASSWORD:") == b"s3cret"
    with pytest.raises(SaslError):
        mech.respond(b"Password:")  # a third challenge is one too many


def test_login_never_sends_the_password_to_an_unknown_challenge() -> None:
    mech = Login("alice", "s3cret")
    mech.auth_command()
    with pytest.raises(SaslError):
        mech.respond(b"Tell me your secrets:")


#: Prompts real servers send: the draft's "Username:"/"Password:", aiosmtpd's "User Name\0"
#: and "Password\0", lower-case and colon-less forms.
LOGIN_PROMPTS = [
    (b"Username:", b"Password:"),
    (b"User Name\0", b"Password\0"),
    (b"User Name", b"Password"),
    (b"username", b"password"),
    (b"USERNAME:", b"PASSWORD:"),
    (b" user name: \0", b"password:\0"),
]


@pytest.mark.parametrize(("user_prompt", "password_prompt"), LOGIN_PROMPTS)
def test_login_accepts_the_prompt_forms_servers_send(
    user_prompt: bytes, password_prompt: bytes
) -> None:
    mech = Login("alice", "s3cret")
    mech.auth_command()
    assert mech.respond(user_prompt) == b"alice"
    assert mech.respond(password_prompt) == b"s3cret"


@pytest.mark.parametrize(
    "prompt", [b"", b"\0", b"Passwort:", b"Password please:", b"User:", b"Pass word", b"Name:"]
)
def test_login_refuses_an_unrecognised_prompt_clearly(prompt: bytes) -> None:
    mech = Login("alice", "s3cret")
    mech.auth_command()
    with pytest.raises(SaslError, match="unrecognised prompt"):
        mech.respond(prompt)


def test_cram_md5_rfc_2195_example() -> None:
    mech = CramMd5("tim", "tanstaaftanstaaf")
    assert mech.auth_command() == Auth("CRAM-MD5")
    response = mech.respond(b"<1896.697170952@postoffice.reston.mci.net>")
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_refuses_empty_challenge() -> None:
    mech = CramMd5("tim", "pw")
    mech.auth_command()
    with pytest.raises(SaslError):
        mech.respond(b"")


# ---------------------------------------------------------------- OAuth 2.0


def test_xoauth2_message_and_error_challenge() -> None:
    mech = XOAuth2("someone@example.com", "ya29.token")
    ir = mech.auth_command().initial_response
    assert ir == b"user=someone@example.com\x01auth=Bearer ya29.token\x01\x01"
    error = b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
    # Empty response, so the server sends its final 5xx.
    assert mech.respond(error) == b""
    assert mech.server_error == error.decode()


def test_oauthbearer_rfc_7628_example() -> None:
    token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    mech = OAuthBearer("user@example.com", token, "server.example.com", 143)
    assert mech.auth_command().initial_response == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143"
        b"\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    # RFC 7628 §3.2.3: an error challenge is answered with a single ^A.
    assert mech.respond(b'{"status":"invalid_token"}') == b"\x01"


def test_oauthbearer_escapes_authzid_and_omits_missing_host() -> None:
    mech = OAuthBearer("a,b=c", "tok")
    assert mech.auth_command().initial_response == b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"


@pytest.mark.parametrize("token", ["a\x01b", "a\r\nb"])
def test_oauth_refuses_control_characters_in_token(token: str) -> None:
    with pytest.raises(ValueError):
        XOAuth2("u", token)
    with pytest.raises(ValueError):
        OAuthBearer("u", token)


# ---------------------------------------------------------------- SCRAM


def test_scram_sha_256_rfc_7677_example() -> None:
    mech = ScramSha256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert mech.auth_command().initial_response == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = mech.respond(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert final == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert mech.respond(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") == b""
    mech.complete()


def test_scram_sha_1_rfc_5802_example() -> None:
    mech = ScramSha1("user", "pencil", nonce="fyko+d2lbbFgONRv9qkxdawL")
    assert mech.auth_command().initial_response == b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    final = mech.respond(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    assert final == (
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert mech.respond(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=") == b""
    mech.complete()


def run_scram(mech: Mechanism, password: str, tamper: bool = False) -> None:
    """One exchange between ``mech`` and a scramp server that knows ``password``."""
    server_mech = scramp.ScramMechanism(mech.name)
    auth_info = server_mech.make_auth_info(password, iteration_count=4096)
    server = server_mech.make_server(lambda username: auth_info)
    first = mech.auth_command().initial_response
    assert first is not None
    server.set_client_first(first.decode())
    client_final = mech.respond(server.get_server_first().encode())
    server.set_client_final(client_final.decode())  # raises if the client's proof is wrong
    server_final = server.get_server_final()
    if tamper:
        server_final = "v=" + base64.b64encode(b"\0" * 32).decode()
    assert mech.respond(server_final.encode()) == b""
    mech.complete()


@pytest.mark.parametrize("cls", [ScramSha256, ScramSha1])
def test_scram_against_scramp_server(cls: type[ScramSha256 | ScramSha1]) -> None:
    mech = cls("user", "pencil")
    run_scram(mech, "pencil")
    run_scram(mech, "pencil")  # the same object authenticates a second connection


def test_scram_wrong_password_is_refused_by_the_server() -> None:
    with pytest.raises(scramp.ScramException):
        run_scram(ScramSha256("user", "wrong"), "pencil")


def test_scram_bad_server_signature_is_a_sasl_error() -> None:
    with pytest.raises(SaslError, match="signature"):
        run_scram(ScramSha256("user", "pencil"), "pencil", tamper=True)


def test_scram_success_without_server_proof_is_refused() -> None:
    mech = ScramSha256("user", "pencil", nonce="abc")
    mech.auth_command()
    mech.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
    with pytest.raises(SaslError):
        mech.complete()  # 235 arrived without the server-final message


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=other-nonce,s=QSXCR+Q6sek8bf92,i=4096",  # nonce not extending ours
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=100000000",  # a stall for the event loop
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=-1",
        b"e=unknown-user",
        b"\xff\xfe",
    ],
)
def test_scram_refuses_bad_server_first(server_first: bytes) -> None:
    mech = ScramSha256("user", "pencil", nonce="abc")
    mech.auth_command()
    with pytest.raises(SaslError):
        mech.respond(server_first)


# ---------------------------------------------------------------- choice and repr


def test_choose_mechanism_takes_the_strongest_offered() -> None:
    offered = ["login", "PLAIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2"]
    assert type(choose_mechanism(offered, "u", "p")) is ScramSha256
    assert type(choose_mechanism(["PLAIN", "LOGIN"], "u", "p")) is Plain
    assert type(choose_mechanism(["login"], "u", "p")) is Login
    assert choose_mechanism(["XOAUTH2", "GSSAPI"], "u", "p") is None
    names = [m.name for m in password_mechanisms(offered, "u", "p")]
    assert names == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]


def test_choose_oauth_mechanism() -> None:
    both = choose_oauth_mechanism(["XOAUTH2", "OAUTHBEARER"], "u", "tok", "smtp.example", 587)
    assert isinstance(both, OAuthBearer)
    assert b"host=smtp.example\x01port=587" in (both.auth_command().initial_response or b"")
    assert isinstance(choose_oauth_mechanism(["plain", "xoauth2"], "u", "tok"), XOAuth2)
    assert choose_oauth_mechanism(["PLAIN", "LOGIN"], "u", "tok") is None


@pytest.mark.parametrize(
    "mech",
    [
        Plain("bob", "hunter2"),
        Login("bob", "hunter2"),
        CramMd5("bob", "hunter2"),
        XOAuth2("bob", "hunter2"),
        OAuthBearer("bob", "hunter2", "h", 1),
        ScramSha256("bob", "hunter2"),
    ],
)
def test_repr_shows_user_not_secret(mech: Mechanism) -> None:
    mech.auth_command()
    assert "bob" in repr(mech)
    assert "hunter2" not in repr(mech)


def test_custom_mechanism_subclass() -> None:
    class External(Mechanism):
        name = "EXTERNAL"

        def initial_response(self) -> bytes:
            return b""

    mech = External("")
    assert mech.auth_command().to_bytes() == b"AUTH EXTERNAL =\r\n"
    with pytest.raises(SaslError):
        mech.respond(b"unexpected")


# ---------------------------------------------------------------- hostile challenges


#: One of each client mechanism, as the client would run it.
def _every_mechanism() -> list[Mechanism]:
    return [
        Plain("user", "pencil"),
        Login("user", "pencil"),
        CramMd5("user", "pencil"),
        XOAuth2("user", "token"),
        OAuthBearer("user", "token", "mx.example.net", 587),
        ScramSha256("user", "pencil", nonce="abc"),
        ScramSha1("user", "pencil", nonce="abc"),
        Mechanism("user"),
    ]


def _answer_or_sasl_error(mech: Mechanism, challenges: list[bytes]) -> None:
    """Drive ``mech`` with ``challenges``: each answer is bytes, or the exchange ends with a
    SaslError (which the client turns into SmtpAuthenticationError); nothing else escapes."""
    mech.auth_command()
    try:
        for challenge in challenges:
            assert isinstance(mech.respond(challenge), bytes)
        mech.complete()
    except SaslError:
        pass


@settings(max_examples=300, deadline=None)
@given(challenges=st.lists(st.binary(max_size=200), max_size=5))
def test_every_mechanism_answers_arbitrary_challenges_or_raises_sasl_error(
    challenges: list[bytes],
) -> None:
    for mech in _every_mechanism():
        _answer_or_sasl_error(mech, challenges)
        mech.auth_command()
        try:  # step() too, called directly as a subclass's caller would
            assert isinstance(mech.step(challenges[0] if challenges else b""), bytes)
        except SaslError:
            pass


#: Server-first messages shaped like the real thing, with hostile values: Unicode digits,
#: signs, huge counts, broken base64, missing or repeated attributes.
_SCRAM_VALUE = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["4096", "²", "٣", "\u0661\u0660", "+4096", "-1", " 4096", "0", "9" * 30, ""]),
)
_SERVER_FIRST = st.lists(
    st.tuples(st.sampled_from(["r", "s", "i", "m", "e", "x", "i"]), _SCRAM_VALUE).map(
        lambda pair: f"{pair[0]}={'abc' + pair[1] if pair[0] == 'r' else pair[1]}"
    ),
    max_size=5,
).map(",".join)


#: A well-formed server-first (for the nonce "abc"), so that hostile server-final messages
#: reach scramp's signature check.
_GOOD_FIRST = "r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"
_SERVER_FINAL = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=50).map(lambda text: ("v=" + text).encode()),
    st.sampled_from([b"v=", b"v=====", b"e=invalid-proof", b"v=AAAA,e=x", b"\xff"]),
)


@settings(max_examples=300, deadline=None)
@given(server_first=_SERVER_FIRST | st.just(_GOOD_FIRST), server_final=_SERVER_FINAL)
@pytest.mark.parametrize("cls", [ScramSha256, ScramSha1])
def test_scram_hostile_server_first_is_a_sasl_error(
    cls: type[ScramSha256 | ScramSha1], server_first: str, server_final: bytes
) -> None:
    _answer_or_sasl_error(
        cls("user", "pencil", max_iterations=4096, nonce="abc"),
        [server_first.encode("utf-8"), server_final],
    )


@pytest.mark.parametrize(
    "count", ["²", "٣", "\u0661\u0660", "\U0001d7d7", "+4096", " 4096", "", "4_096"]
)
def test_scram_iteration_count_must_be_ascii_digits(count: str) -> None:
    mech = ScramSha256("user", "pencil", nonce="abc")
    mech.auth_command()
    with pytest.raises(SaslError, match="iteration count"):
        mech.respond(f"r=abcdef,s=QSXCR+Q6sek8bf92,i={count}".encode())
