"""Cyrus IMAP 3.6 for tests: sasldb users, Cyrus's own spool, plaintext+STARTTLS and implicit TLS.

Cyrus's ``master`` takes its configuration paths as arguments, so no bind mounts are needed; the
namespace still makes teardown exact. ``imapd`` comes from the cyrus-imapd package unpacked by
scripts/install-system. Mailboxes (``user/<name>``) are created by the admin user ``cyrus`` over
IMAP once the server is up, and messages are seeded with APPEND (flags and dates kept), since
Cyrus's spool is not a plain maildir.
"""

from __future__ import annotations

import imaplib
import subprocess
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
    find_binary,
    free_port,
    make_directory,
    require_program,
    require_root,
)

RUN_AS = "cyrus"
ADMIN = "cyrus"
ADMIN_PASSWORD = "cyrus-admin-secret"
SERVERNAME = "localhost"  # also the SASL realm the users are stored under


def start_cyrus(
    ca: TestCA,
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    messages: int = 0,
    seed_value: int = 1,
    cert: CertFiles | None = None,
    parent: Path | None = None,
) -> RunningServer:
    """Start Cyrus; every user gets a mailbox, ``messages`` go to the first user's INBOX."""
    require_root("Cyrus in the rig")
    master = require_program("master", "cyrus-common")
    saslpasswd2 = require_program("saslpasswd2", "sasl2-bin")
    imapd = find_binary("cyrus-imapd", "usr/lib/cyrus/bin/imapd")
    idled = find_binary("cyrus-imapd", "usr/lib/cyrus/bin/idled")
    directory = make_directory("cyrus", parent)
    cert = cert or ca.server
    port, tls_port = free_port(), free_port()
    conf, spool, run = directory / "conf", directory / "spool", directory / "run"
    # lib/socket holds the per-process sockets imapd and idled talk through (IDLE push).
    for path in (conf / "lib" / "socket", conf / "lib" / "proc", spool, run):
        path.mkdir(parents=True)
    (conf / "cert.pem").write_bytes(cert.chain.read_bytes())
    (conf / "key.pem").write_bytes(cert.key.read_bytes())
    (conf / "key.pem").chmod(0o600)
    imapd_conf = conf / "imapd.conf"
    imapd_conf.write_text(
        f"configdirectory: {conf}/lib\n"
        f"partition-default: {spool}\n"
        f"servername: {SERVERNAME}\n"
        f"admins: {ADMIN}\n"
        "sasl_pwcheck_method: auxprop\n"
        "sasl_auxprop_plugin: sasldb\n"
        f"sasl_sasldb_path: {conf}/sasldb2\n"
        "sasl_mech_list: PLAIN LOGIN\n"
        "allowplaintext: yes\n"
        "unixhierarchysep: yes\n"
        "altnamespace: yes\n"
        f"tls_server_cert: {conf}/cert.pem\n"
        f"tls_server_key: {conf}/key.pem\n"
        f"notifysocket: {run}/notify\n"
        f"lmtpsocket: {run}/lmtp\n"
        "syslog_prefix: imapscope-cyrus\n"
    )
    (conf / "cyrus.conf").write_text(
        "START {\n"
        f'  recover cmd="ctl_cyrusdb -C {imapd_conf} -r"\n'
        "}\n"
        "SERVICES {\n"
        f'  imap cmd="{imapd} -C {imapd_conf}" listen="{HOST}:{port}" prefork=0\n'
        f'  imaps cmd="{imapd} -s -C {imapd_conf}" listen="{HOST}:{tls_port}" prefork=0\n'
        "}\n"
        "EVENTS {\n}\n"
        # idled tells IDLE sessions about changes at once (without it they poll every minute).
        f'DAEMON {{\n  idled cmd="{idled} -C {imapd_conf}"\n}}\n'
    )
    for name, password in {ADMIN: ADMIN_PASSWORD, **users}.items():
        subprocess.run(
            [saslpasswd2, "-p", "-c", "-f", f"{conf}/sasldb2", "-u", SERVERNAME, name],
            input=password.encode(),
            check=True,
        )
    chown_tree(directory, RUN_AS)

    script = f"exec {master} -C {imapd_conf} -M {conf}/cyrus.conf -p {run}/master.pid -D"
    process = ServerProcess("cyrus", script, directory)
    server = RunningServer(
        kind="cyrus",
        port=port,
        tls_port=tls_port,
        users=dict(users),
        ca_file=ca.ca_file,
        directory=directory,
        process=process,
    )
    process.wait_ready([(port, False), (tls_port, True)])
    try:
        _provision(server, messages, seed_value)
    except Exception:
        server.stop()
        raise
    return server


def _provision(server: RunningServer, messages: int, seed_value: int) -> None:
    admin = imaplib.IMAP4(server.host, server.port)
    admin.login(ADMIN, ADMIN_PASSWORD)
    for name in server.users:
        status, detail = admin.create(f"user/{name}")
        if status != "OK":
            raise RuntimeError(f"Cyrus: CREATE user/{name} failed: {detail!r}")
    admin.logout()
    seeded: dict[str, int] = dict.fromkeys(server.users, 0)
    first = next(iter(server.users))
    if messages:
        client = imaplib.IMAP4(server.host, server.port)
        client.login(first, server.users[first])
        for message in seed.generate(messages, seed_value):
            status, detail = client.append(
                "INBOX",
                " ".join(sorted(message.flags)) or None,
                imaplib.Time2Internaldate(message.date.timestamp()),
                message.raw,
            )
            if status != "OK":
                raise RuntimeError(f"Cyrus: APPEND failed: {detail!r}")
        client.logout()
        seeded[first] = messages
    server.seeded = seeded
