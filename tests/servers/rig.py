"""What every server of the rig shares: ports, certificates, a namespaced process, readiness.

Theory of operation
-------------------
Each server runs in its own temporary directory, inside a private mount and PID namespace made by
``unshare --mount --pid --fork --kill-child``. The mount namespace lets a server's compiled-in paths
(Courier's ``/etc/courier`` and ``/run/courier``) be bind-mounted onto that directory without
touching the machine's configuration. The PID namespace makes teardown exact: when the
namespace's first process (its "init") dies, the kernel kills every process in it, including
daemons that detach (Courier's ``gam_server``). Stopping is therefore one SIGKILL to that init,
and :meth:`ServerProcess.stop` verifies that no process of the namespace is left. (``--kill-child``
alone is not enough: it relies on the parent-death signal, which the kernel clears when a process
changes its credentials, as Cyrus's master does when it drops to the ``cyrus`` user.)

Readiness means: every listener answers with an IMAP greeting (``* OK``), the implicit-TLS ones
after a handshake verified against the test CA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trustme

HOST = "127.0.0.1"
# Dovecot treats a connection as secure when the client and server addresses are equal (tested in
# test_rig_smoke.py). A client that binds to this address before connecting to HOST is not "secure"
# and sees LOGINDISABLED when plaintext auth is disabled.
INSECURE_SOURCE_ADDRESS = "127.0.0.2"
DEFAULT_USERS: Mapping[str, str] = {"alice": "alice-secret-1", "bob": "bob-secret-2"}
START_TIMEOUT = 30.0
# Where scripts/install-system unpacks courier-imap and cyrus-imapd. Not under a home directory:
# the servers run these binaries as unprivileged users.
SERVER_ROOT = Path(os.environ.get("IMAPSCOPE_SERVER_ROOT") or "/var/cache/imapscope/servers")


class RigError(RuntimeError):
    """A server of the rig could not be started or stopped; the message says why and what to do."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise RigError(
            f"{what} needs root: the rig runs each server in a private mount and PID namespace. "
            "Run the tests as root (scripts/test does, on CI)."
        )


def find_binary(package: str, relative: str) -> Path:
    """A binary unpacked from a conflicting package by scripts/install-system."""
    path = SERVER_ROOT / package / relative
    if not path.is_file():
        raise RigError(
            f"{path} is missing: {package} is unpacked (not installed) by scripts/install-system. "
            "Run scripts/install-system as root, or set IMAPSCOPE_SERVER_ROOT to where it went."
        )
    return path


def require_program(program: str, package: str) -> str:
    found = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/lib/cyrus/bin/{program}") if Path(p).exists()),
        None,
    )
    if found is None:
        raise RigError(f"{program} not found: install the Debian package {package} (scripts/test).")
    return found


@dataclass(frozen=True)
class CertFiles:
    """A server certificate: key and chain PEM files, and their concatenation (key first)."""

    key: Path
    chain: Path
    combined: Path


class TestCA:
    """A certificate authority made for one test session; clients trust ``ca_file``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="imapscope test CA")
        self.ca_file = directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self.server = self.issue("server", "localhost", "127.0.0.1", "::1")

    def issue(
        self,
        name: str,
        *identities: str,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CertFiles:
        """Issue a leaf certificate for ``identities`` (DNS names or IP addresses)."""
        leaf = self._ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
        return _write_cert(self.directory / name, leaf)

    def expired(self, name: str = "expired") -> CertFiles:
        """A certificate for localhost that expired in 2020."""
        return self.issue(
            name,
            "localhost",
            "127.0.0.1",
            not_before=datetime(2019, 1, 1, tzinfo=UTC),
            not_after=datetime(2020, 1, 1, tzinfo=UTC),
        )

    def wrong_host(self, name: str = "wrong-host") -> CertFiles:
        """A valid certificate for a host that is not the one the tests connect to."""
        return self.issue(name, "mail.other.test")

    def self_signed(self, name: str = "self-signed") -> CertFiles:
        """A certificate for localhost from a CA that nobody trusts."""
        stranger = trustme.CA(organization_name="untrusted")
        return _write_cert(self.directory / name, stranger.issue_cert("localhost", "127.0.0.1"))

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _write_cert(prefix: Path, leaf: trustme.LeafCert) -> CertFiles:
    files = CertFiles(
        key=prefix.with_suffix(".key.pem"),
        chain=prefix.with_suffix(".chain.pem"),
        combined=prefix.with_suffix(".pem"),
    )
    leaf.private_key_pem.write_to_path(str(files.key))
    files.chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(files.combined))
    return files


@dataclass
class RunningServer:
    """What a test needs to reach a started server."""

    kind: str
    port: int  # plaintext, with STARTTLS
    tls_port: int  # implicit TLS
    users: Mapping[str, str]
    ca_file: Path
    directory: Path
    seeded: Mapping[str, int] = field(default_factory=dict)  # messages per user INBOX
    host: str = HOST
    process: ServerProcess | None = None

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def stop(self) -> None:
        """Stop the server (verifying no process is left) and remove its directory.

        Set IMAPSCOPE_KEEP_SERVERS=1 to keep the directory (configuration, logs, mail) for a look.
        """
        if self.process:
            self.process.stop()
        if not os.environ.get("IMAPSCOPE_KEEP_SERVERS"):
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Stop the server's processes and start them again on the same ports and mail."""
        assert self.process is not None
        old = self.process
        old.stop()
        self.process = ServerProcess(old.name, old.script, old.directory)
        self.process.wait_ready([(self.port, False), (self.tls_port, True)])

    def describe(self) -> str:
        users = ", ".join(f"{name}:{password}" for name, password in self.users.items())
        return (
            f"{self.kind} on {self.host}\n"
            f"  plaintext+STARTTLS port: {self.port}\n"
            f"  implicit TLS port:       {self.tls_port}\n"
            f"  users (name:password):   {users}\n"
            f"  seeded INBOX messages:   {dict(self.seeded)}\n"
            f"  CA file:                 {self.ca_file}\n"
            f"  directory:               {self.directory}"
        )


class ServerProcess:
    """A shell script run as the first process of a private mount + PID namespace."""

    def __init__(self, name: str, script: str, directory: Path) -> None:
        self.name = name
        self.script, self.directory = script, directory
        self.log = directory / f"{name}.log"
        self._log_file = self.log.open("ab")  # appended to across restarts
        self.popen = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "sh",
                "-ec",
                script,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
        )
        self.init_pid: int | None = None  # the namespace's first process, in our namespace
        self.pid_namespace: str | None = None
        self._find_namespace()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, listeners: list[tuple[int, bool]]) -> None:
        """Wait until every listener, given as (port, implicit TLS?), sends an IMAP greeting.

        Readiness is not about trust (variants serve untrusted certificates on purpose), so the
        TLS handshake here does not verify; tests verify against the CA themselves.
        """
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(listeners)
        last_error = ""
        while pending:
            if self.popen.poll() is not None:
                raise RigError(
                    f"{self.name} exited with status {self.popen.returncode} while starting.\n"
                    f"Its log ({self.log}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RigError(
                    f"{self.name} did not greet on port {pending[0][0]} within {START_TIMEOUT}s "
                    f"(last error: {last_error}).\nIts log ({self.log}):\n{self.log_tail()}"
                )
            port, tls = pending[0]
            try:
                greeting = read_greeting(port, _UNVERIFIED if tls else None)
            except (OSError, ssl.SSLError) as exc:
                last_error = repr(exc)
                time.sleep(0.05)
                continue
            if not greeting.startswith(b"* OK"):
                self.stop()
                raise RigError(f"{self.name} greeted on port {port} with {greeting!r}")
            pending.pop(0)

    def _find_namespace(self) -> None:
        """Record the namespace's init (unshare's only child) and the namespace's identity."""
        children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        deadline = time.monotonic() + 5
        while self.init_pid is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.init_pid = int(children.read_text().split()[0])
                self.pid_namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
            if self.init_pid is None:
                time.sleep(0.01)

    def processes_left(self) -> list[int]:
        """Processes still alive in this server's PID namespace (empty once stopped)."""
        if self.pid_namespace is None:
            return []
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "pid") == self.pid_namespace:
                        left.append(int(entry.name))
        return left

    def stop(self) -> None:
        if self.init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        # unshare reaps the init and exits by itself; killing it first would leave the reaping to
        # the machine's init, which is slow. It blocks SIGTERM, hence SIGKILL if it hangs.
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._log_file.close()
        deadline = time.monotonic() + 5
        while (left := self.processes_left()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            raise RigError(f"{self.name}: processes {left} outlived the server's namespace")


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def read_greeting(port: int, context: ssl.SSLContext | None, host: str = HOST) -> bytes:
    """Connect (with TLS when a context is given) and return the server's first line."""
    with socket.create_connection((host, port), timeout=2) as raw:
        if context is None:
            return raw.makefile("rb").readline()
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.makefile("rb").readline()


def make_directory(kind: str, parent: Path | None = None) -> Path:
    """A fresh directory for one server, traversable by the servers' unprivileged users."""
    directory = Path(tempfile.mkdtemp(prefix=f"imapscope-{kind}-", dir=parent))
    directory.chmod(0o755)
    return directory


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything below it to ``user`` (and that user's primary group)."""
    subprocess.run(["chown", "-R", f"{user}:", str(path)], check=True)
