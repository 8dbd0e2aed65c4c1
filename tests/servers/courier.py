"""Courier-IMAP 5 for tests: userdb users, maildir, plaintext+STARTTLS and implicit-TLS listeners.

Courier's authentication library has its paths compiled in (``/etc/courier/authdaemonrc``,
``/run/courier/authdaemon/socket``, ``/etc/courier/userdb.dat``), so the server's own directory is
bind-mounted over ``/etc/courier`` and ``/run/courier`` inside its private mount namespace.
``imaplogin`` and ``imapd`` come from the courier-imap package unpacked by scripts/install-system.

Virtual shared folders (the ``#shared.`` namespace) are set up with a shared index listing every
user; the second user shares a folder ``Projects`` with everyone (read and look-up rights), so the
first user sees it as ``#shared.<second user>.Projects``.
"""

from __future__ import annotations

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

MAIL_USER = "courier"
SHARED_FOLDER = "Projects"
CAPABILITY = (
    "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
)


def _crypt(password: str) -> str:
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl passwd failed: {result.stderr}")
    return result.stdout.strip()


def start_courier(
    ca: TestCA,
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    messages: int = 0,
    seed_value: int = 1,
    cert: CertFiles | None = None,
    parent: Path | None = None,
) -> RunningServer:
    """Start Courier-IMAP; ``messages`` are seeded into the first user's INBOX."""
    require_root("Courier-IMAP in the rig")
    imaplogin = find_binary("courier-imap", "usr/lib/courier/courier/imaplogin")
    imapd = find_binary("courier-imap", "usr/bin/imapd")
    couriertcpd = require_program("couriertcpd", "courier-base")
    couriertls = require_program("couriertls", "courier-base")
    authdaemond = "/usr/lib/courier/courier-authlib/authdaemond"
    if not Path(authdaemond).exists():
        require_program("authdaemond-missing", "courier-authdaemon")
    directory = make_directory("courier", parent)
    cert = cert or ca.server
    port, tls_port = free_port(), free_port()
    uid = subprocess.run(["id", "-u", MAIL_USER], capture_output=True, text=True, check=True)
    gid = subprocess.run(["id", "-g", MAIL_USER], capture_output=True, text=True, check=True)
    ids = f"uid={uid.stdout.strip()}|gid={gid.stdout.strip()}"

    etc = directory / "etc"
    (etc / "shared").mkdir(parents=True)
    (directory / "run" / "authdaemon").mkdir(parents=True)
    (etc / "authdaemonrc").write_text(
        'authmodulelist="authuserdb"\ndaemons=2\nauthdaemonvar=/run/courier/authdaemon\n'
        'DEBUG_LOGIN=0\nDEFAULTOPTIONS=""\nLOGGEROPTS=""\n'
    )
    userdb, index = [], []
    seeded: dict[str, int] = {}
    for position, (name, password) in enumerate(users.items()):
        home = directory / "home" / name
        maildir = home / "Maildir"
        seed.make_maildir(maildir)
        if position == 0 and messages:
            seeded[name] = seed.write_maildir(maildir, seed.generate(messages, seed_value))
        else:
            seeded[name] = 0
        if position == 1:
            seed.make_maildir(maildir / f".{SHARED_FOLDER}")
            (maildir / f".{SHARED_FOLDER}" / "maildirfolder").touch()
            subprocess.run(
                ["maildiracl", "-set", str(maildir), f"INBOX.{SHARED_FOLDER}", "anyone", "lr"],
                check=True,
            )
        userdb.append(f"{name}\t{ids}|home={home}|mail={maildir}|systempw={_crypt(password)}\n")
        index.append(f"{name}\t{uid.stdout.strip()}\t{gid.stdout.strip()}\t{home}\tMaildir\n")
    (etc / "userdb").write_text("".join(userdb))
    (etc / "userdb").chmod(0o600)
    (etc / "shared" / "index").write_text("".join(index))
    (etc / "imapd.pem").write_bytes(cert.combined.read_bytes())
    chown_tree(directory / "home", MAIL_USER)
    # imaplogin reads the certificate after dropping privileges, for STARTTLS.
    chown_tree(etc / "imapd.pem", MAIL_USER)
    (etc / "imapd.pem").chmod(0o600)

    env = {
        "IMAP_CAPABILITY": CAPABILITY,
        "IMAP_CAPABILITY_TLS": f"{CAPABILITY} AUTH=PLAIN",
        "IMAP_STARTTLS": "YES",
        "IMAP_TLS_REQUIRED": "0",
        "COURIERTLS": couriertls,
        "TLS_CERTFILE": "/etc/courier/imapd.pem",
        "TLS_VERIFYPEER": "NONE",
        "IMAP_KEYWORDS": "1",
        "IMAP_ACL": "1",
        "IMAP_IDLE_TIMEOUT": "60",
        "IMAP_UMASK": "022",
        "IMAP_USELOCKS": "1",
        # Enhanced IDLE (FAM/gamin) pushes other sessions' changes at once; without it IDLE
        # polls every IMAP_IDLE_TIMEOUT seconds.
        "IMAP_ENHANCEDIDLE": "1",
        "IMAP_SHAREDINDEXFILE": "/etc/courier/shared/index",
        "IMAP_TRASHFOLDERNAME": "Trash",
        "MAILDIRPATH": "Maildir",
    }
    exports = " ".join(f"{key}='{value}'" for key, value in env.items())
    tcpd = f"{couriertcpd} -address={HOST} -maxprocs=40 -maxperip=40 -nodnslookup -noidentlookup"
    script = f"""
mkdir -p /run/courier
mount --bind {etc} /etc/courier
mount --bind {directory}/run /run/courier
(cd /etc/courier && makeuserdb)
{authdaemond} &
export {exports}
{tcpd} {port} {imaplogin} {imapd} Maildir &
{tcpd} {tls_port} {couriertls} -server -tcpd {imaplogin} {imapd} Maildir &
wait
"""
    process = ServerProcess("courier", script, directory)
    server = RunningServer(
        kind="courier",
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
