"""Dovecot 2.3 for tests: passwd-file users, maildir, plaintext+STARTTLS and implicit-TLS listeners.

Knobs (keyword arguments of :func:`start_dovecot`) start variants: plaintext auth disabled, another
certificate, a per-user connection limit, a capability override, a login greeting, or any extra
configuration text. Mail processes run as the ``dovecot`` system user, so ``first_valid_uid`` is
lowered (Dovecot refuses mail access below it; see shared/FACTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imapscope.sandbox import demo as seed
from tests.servers.rig import (
    DEFAULT_USERS,
    HOST,
    CertFiles,
    RunningServer,
    ServerProcess,
    TestCA,
    chown_tree,
    free_port,
    make_directory,
    require_program,
    require_root,
)

MAIL_USER = "dovecot"


def start_dovecot(
    ca: TestCA,
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    messages: int = 0,
    seed_value: int = 1,
    disable_plaintext_auth: bool = False,
    cert: CertFiles | None = None,
    max_userip_connections: int | None = None,
    capability: str | None = None,
    login_greeting: str | None = None,
    first_valid_uid: int = 1,
    fast_refusals: bool = False,
    extra_config: str = "",
    parent: Path | None = None,
) -> RunningServer:
    """Start a Dovecot instance; ``messages`` are seeded into the first user's INBOX.

    ``fast_refusals``: a wrong password is refused at once, not after Dovecot's 2 s failure delay
    and its per-IP penalty (doubling up to 15 s), for tests about what happens after refusals,
    not about the delay."""
    require_root("Dovecot in the rig")
    dovecot = require_program("dovecot", "dovecot-imapd")
    directory = make_directory("dovecot", parent)
    cert = cert or ca.server
    port, tls_port = free_port(), free_port()

    (directory / "users").write_text(
        "".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in users.items())
    )
    seeded: dict[str, int] = {}
    for index, name in enumerate(users):
        maildir = directory / "home" / name / "Maildir"
        seed.make_maildir(maildir)
        if index == 0 and messages:
            seeded[name] = seed.write_maildir(maildir, seed.generate(messages, seed_value))
        else:
            seeded[name] = 0
    for sub in ("run", "state"):
        (directory / sub).mkdir()
    chown_tree(directory / "home", MAIL_USER)

    settings = [
        f"base_dir = {directory}/run",
        f"state_dir = {directory}/state",
        f"instance_name = imapscope-{directory.name}",
        f"listen = {HOST}",
        "protocols = imap",
        "log_path = /dev/stderr",  # into the process log the rig shows on failure
        "ssl = yes",
        f"ssl_cert = <{cert.chain}",
        f"ssl_key = <{cert.key}",
        f"disable_plaintext_auth = {'yes' if disable_plaintext_auth else 'no'}",
        "auth_mechanisms = plain login",
        # Mail processes run as the dovecot user (uid ~100): a higher first_valid_uid makes
        # Dovecot refuse the mail store after login ("Logged in, but initialization failed").
        f"first_valid_uid = {first_valid_uid}",
        "mail_location = maildir:~/Maildir",
        f"default_internal_user = {MAIL_USER}",
        "default_login_user = dovenull",
    ]
    if fast_refusals:
        settings.append("auth_failure_delay = 0")
    if max_userip_connections is not None:
        settings.append(f"mail_max_userip_connections = {max_userip_connections}")
    if login_greeting is not None:
        settings.append(f"login_greeting = {login_greeting}")
    protocol_imap = [f"  imap_capability = {capability}"] if capability else []
    # The documented way to turn the auth penalty off (doc.dovecot.org, "Authentication penalty").
    penalty_off = (
        "\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }" if fast_refusals else ""
    )
    config = (
        "\n".join(settings)
        + f"""
passdb {{
  driver = passwd-file
  args = {directory}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_USER} home={directory}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot ={penalty_off}
}}
protocol imap {{
{chr(10).join(protocol_imap)}
}}
{extra_config}
"""
    )
    (directory / "dovecot.conf").write_text(config)
    process = ServerProcess("dovecot", f"exec {dovecot} -F -c {directory}/dovecot.conf", directory)
    server = RunningServer(
        kind="dovecot",
        port=port,
        tls_port=tls_port,
        users=dict(users),
        ca_file=ca.ca_file,
        directory=directory,
        seeded=seeded,
        process=process,
    )
    process.wait_ready([(port, False), (tls_port, True)])
    return server
