"""What ``import trio_smtp`` and touching :class:`~trio_smtp.SmtpClient` load (docs/design.rst,
"Import cost"): the client and its session, not the optional parts -- SCRAM's scramp (and its
asn1crypto), pickup delivery and its uuid, email.policy and the serialiser (loaded with
the first EmailMessage prepared), the testing server, the CLI, the pool, send_many's
batch modules and streamed outcomes.  Each is loaded where it is first used.  Checked in a
fresh interpreter (the pytest plugin has loaded everything in this one); no timing is
asserted, the figures are in the docs.
"""

from __future__ import annotations

import pytest
from helpers.interpreter import loaded_after

#: Loaded by nothing a plain SMTP send needs.
OPTIONAL = (
    "scramp",
    "asn1crypto",
    "uuid",
    "email.policy",  # loaded with the first EmailMessage (whose author has loaded it)
    "trio_smtp._message.serialise",
    "trio_smtp._delivery.pickup",
    "trio_smtp.testing",
    "trio_smtp._cli.main",
    "trio_smtp._cli.probe",
    "trio_smtp._client.send",
    "trio_smtp._client.pool",  # SmtpPool, and what only it and send_many_as_completed use
    "trio_smtp._client.leasing",
    "trio_smtp._client.pacing",
    "trio_smtp._client.pool_batch",
    "trio_smtp._client.streamed",
    "trio_smtp._delivery.batch",  # send_many: loaded with the first batch
    "trio_smtp._delivery.batch_items",
    "trio_smtp._cli.bulk",
    "tqdm",
)


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m in names or m.startswith(tuple(f"{n}." for n in names))]


def test_touching_smtpclient_loads_no_optional_module() -> None:
    modules = loaded_after("import trio_smtp\ntrio_smtp.SmtpClient('smtp.example.org')")
    assert "trio_smtp._client.client" in modules
    assert _loaded(modules, OPTIONAL) == []


def test_password_authentication_without_scram_does_not_load_scramp() -> None:
    modules = loaded_after(
        "import trio_smtp.sasl as s\ns.choose_mechanism(['PLAIN', 'LOGIN'], 'u', 'p')"
    )
    assert "trio_smtp.sasl._mechanisms" in modules
    assert _loaded(modules, ("scramp",)) == []


def test_scram_loads_scramp_when_used() -> None:
    code = "import trio_smtp.sasl as s\nm = s.ScramSha256('user', 'pencil')\nm.initial_response()"
    assert "scramp" in loaded_after(code)


#: The public classes that stay dataclasses (users may ``dataclasses.replace`` them) and
#: that the client's import builds; OutgoingMessage (also one) loads with the first batch.
PUBLIC_DATACLASSES = {
    "trio_smtp._config.Timeouts",
    "trio_smtp._results.SendCompleted",
    "trio_smtp._results.SendResult",
    "trio_smtp._delivery.stats.ClientStatistics",
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [("trio_smtp.protocol", set()), ("trio_smtp._client.client", PUBLIC_DATACLASSES)],
)
def test_the_client_path_builds_only_the_public_dataclasses(
    module: str, expected: set[str]
) -> None:
    # @dataclass generates and compiles each class's methods at import (~0.45 ms a class):
    # the other value classes on this path are hand-written (trio_smtp.protocol._frozen).
    code = (
        "import dataclasses\ncalls = []\nreal = dataclasses._process_class\n"
        "def spy(cls, *a, **k):\n    calls.append(cls.__module__ + '.' + cls.__qualname__)\n"
        "    return real(cls, *a, **k)\n"
        f"dataclasses._process_class = spy\nimport {module}\n"
        "ours = {c for c in calls if c.startswith('trio_smtp')}\n"
        f"assert ours == {expected!r}, sorted(ours)"
    )
    loaded_after(code)


def test_an_email_message_loads_the_serialiser_when_prepared() -> None:
    code = (
        "import email.message, trio_smtp._message.prepare as m\n"
        "msg = email.message.EmailMessage()\n"
        "msg['From'] = 'a@example.org'; msg['To'] = 'b@example.org'; msg.set_content('hi')\n"
        "m.prepare_message(msg)"
    )
    assert "trio_smtp._message.serialise" in loaded_after(code)
