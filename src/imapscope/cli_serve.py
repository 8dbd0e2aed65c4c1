"""`imapscope serve`, `imapscope accounts ...` and `imapscope tokens ...`.

The accounts and tokens commands work on the data directory's store directly, so they work
whether or not `serve` runs; a running `serve` notices their changes within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from imapscope.store import Store
    from imapscope.sync import SyncOptions

# imapscope.store and imapscope.sync (SQLAlchemy, Alembic) are imported by the commands that use
# them, not here: `imapscope check`, run every few minutes by monitoring, should not pay for them.

# Not on a terminal (a pipe, a file, CI), output is as wide as it needs to be: a value is never
# cut to fit 80 columns. On a terminal, tables wrap long values (see table()), never truncate.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)
err_console = Console(stderr=True, highlight=False)


def table(*headers: str) -> Table:
    """A table whose cells wrap rather than being cut short with an ellipsis."""
    found = Table()
    for header in headers:
        found.add_column(header, overflow="fold")
    return found


T = TypeVar("T")

DATA_DIR_ENV = "IMAPSCOPE_DATA_DIR"
DEFAULT_PORT = 8400
#: Where people reach the web UI (behind a proxy, say): the links notifications carry. Without
#: it, the address serve listens on.
PUBLIC_URL_ENV = "IMAPSCOPE_PUBLIC_URL"

accounts_app = typer.Typer(help="Register and inspect the accounts `serve` keeps in sync.")
tokens_app = typer.Typer(help="API and web UI tokens.")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".local/share/imapscope/serve")


DataDir = typer.Option(
    None, "--data-dir", help=f"The service's data directory (default ${DATA_DIR_ENV} or "
    "~/.local/share/imapscope/serve).",
)  # fmt: skip


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def with_store(data_dir: Path | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run ``work``, close it; store errors become a clear message."""
    from imapscope.store import Store, StoreError  # noqa: PLC0415
    from imapscope.sync import VerifyError  # noqa: PLC0415

    async def run() -> T:
        store = await Store.open(data_dir or default_data_dir())
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except VerifyError as exc:
        from imapscope.probe import render_human  # noqa: PLC0415

        render_human(exc.report, err_console)
        fail(f"{exc}: use --force to save anyway")
    except StoreError as exc:
        fail(str(exc))


async def first_token(store: Store) -> str | None:
    """A token named 'first' when there is none yet (the first start); else None."""
    if await store.tokens():
        return None
    _view, token = await store.create_token("first")
    return token


def serve_command(
    data_dir: Path | None = DataDir,
    listen: str = typer.Option(
        "127.0.0.1", "--listen", help="Address to bind (loopback only unless you say otherwise)."
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="HTTP port of the API and web UI."),
    ca_file: Path | None = typer.Option(None, "--ca-file", help="Trust this CA for servers."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify server certificates."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per network step."),
    database: str | None = typer.Option(
        None,
        "--database",
        envvar="IMAPSCOPE_DATABASE_URL",
        show_envvar=True,
        help="postgresql://user:password@host/db instead of SQLite in the data directory.",
    ),
    lease_ttl: float = typer.Option(
        30.0,
        "--lease-ttl",
        min=3.0,
        max=3600.0,
        help="Seconds before another worker takes over the accounts of one that stopped.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        help="Worker processes on this machine sharing the port and the accounts (PostgreSQL).",
    ),
    max_connecting: int = typer.Option(
        100,
        "--max-connecting",
        min=1,
        max=100_000,
        help="Accounts of one worker connecting and logging in at the same time; the others "
        "wait their turn (a start with thousands of accounts does not flood their servers).",
    ),
    listen_fd: int | None = typer.Option(None, "--listen-fd", hidden=True),
    started_together: int = typer.Option(1, "--started-together", hidden=True, min=1),
) -> None:
    """Keep the registered accounts in sync, with the REST API and the web UI. Several serve
    processes on one --database share the accounts (each held by one, through a lease);
    --workers N starts N of them on this machine, sharing one port."""
    from imapscope.sync import SyncOptions  # noqa: PLC0415

    options = SyncOptions(ca_file=str(ca_file) if ca_file else None, insecure=insecure,
                          timeout=timeout, lease_ttl=lease_ttl,
                          started_together=started_together,
                          connecting=max_connecting)  # fmt: skip
    directory = data_dir or default_data_dir()
    if workers > 1:
        if not (database or "").startswith(("postgresql:", "postgresql+asyncpg:", "postgres:")):
            fail(
                f"--workers {workers} needs PostgreSQL (--database postgresql://... or "
                "$IMAPSCOPE_DATABASE_URL): SQLite takes one writer at a time, so several "
                "processes would wait on each other. One process on SQLite needs no setup."
            )
        raise typer.Exit(run_workers(workers, directory, listen, port, database, sys.argv[1:]))
    asyncio.run(_serve(directory, listen, port, options, database, listen_fd=listen_fd))


#: How often a worker that keeps dying right after it starts is restarted before serve gives up.
WORKER_RESTARTS = 5


def run_workers(
    count: int, data_dir: Path, listen: str, port: int, database: str | None, argv: list[str]
) -> int:
    """Start ``count`` serve processes sharing one listening socket (the kernel hands each new
    connection to one of them) and one database (leases share the accounts out). Restart a
    worker that dies; on SIGINT or SIGTERM stop them all (each hands its leases back)."""
    from imapscope.store import Store, StoreError  # noqa: PLC0415

    async def prepare() -> str | None:
        try:
            store = await Store.open(data_dir, database)  # migrations run once, here
        except StoreError as exc:
            fail(str(exc))
        try:
            return await first_token(store)
        finally:
            await store.close()

    token = asyncio.run(prepare())
    sock = bind(listen, port)
    sock.listen(1024)
    child_args = _without_option(argv, "--workers")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imapscope",
                *child_args,
                "--listen-fd",
                str(sock.fileno()),
                "--started-together",
                str(count),
            ],
            pass_fds=(sock.fileno(),),
            process_group=0,  # Ctrl-C reaches this process, which stops them in order
        )

    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [start() for _ in range(count)]
    _announce(address_of(sock), token)
    console.print(f"  {count} workers: pids {', '.join(str(c.pid) for c in children)}")
    quick_deaths = [0] * count
    started = [time.monotonic()] * count
    status = 0
    while not stopping:
        time.sleep(0.2)
        for index, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            quick_deaths[index] = (
                quick_deaths[index] + 1 if time.monotonic() - started[index] < 5 else 1
            )
            if quick_deaths[index] > WORKER_RESTARTS:
                err_console.print(f"worker {child.pid} keeps exiting ({code}); serve stops")
                stopping, status = True, 1
                break
            err_console.print(f"worker {child.pid} exited with {code}; starting another")
            children[index] = start()
            started[index] = time.monotonic()
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    sock.close()
    return status


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` or ``name=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out


def bind(listen: str, port: int) -> socket.socket:
    """The listening socket (bound here, so that port 0 picks one and the address printed is
    the real one)."""
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every response on a kept-alive connection waited ~40 ms for the client's
    # delayed ACK (uvicorn writes the headers and the body apart; Nagle held the body).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {listen}:{port}: {exc.strerror}; choose another --port (0 picks)")
    return sock


#: Seconds in-flight HTTP requests may take to finish once serve is asked to stop.
SHUTDOWN_GRACE = 2


def http_server(app: Any) -> Any:
    """A uvicorn server that stops cleanly on SIGINT or SIGTERM: uvicorn re-raises the signal
    once it has stopped, which would cancel our own shutdown (closing the store) half-way."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    # In-flight requests (a long /check, an /events wait) get SHUTDOWN_GRACE seconds, then are
    # cancelled: SIGTERM stops serve within seconds whatever is running.
    return Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                 timeout_graceful_shutdown=SHUTDOWN_GRACE))  # fmt: skip


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def _serve(
    data_dir: Path, listen: str, port: int, options: SyncOptions, database: str | None = None,
    *, listen_fd: int | None = None,
) -> None:  # fmt: skip
    """One serve process. With ``listen_fd`` it is a worker of ``--workers``: the socket is
    its parent's (shared by every worker) and the parent has printed where it listens."""
    from imapscope.api import create_app  # noqa: PLC0415
    from imapscope.store import Store, StoreError  # noqa: PLC0415
    from imapscope.sync import SyncService  # noqa: PLC0415

    try:
        store = await Store.open(data_dir, database)
    except StoreError as exc:
        fail(str(exc))
    sock = bind(listen, port) if listen_fd is None else socket.socket(fileno=listen_fd)
    try:
        token = await first_token(store)
        service = SyncService(store, options, local_dir=data_dir / "workers")
        public_url = os.environ.get(PUBLIC_URL_ENV) or address_of(sock)
        app = create_app(service, manage_service=True, public_url=public_url)
        server = http_server(app)
        # What start-up built (modules, the app, the schema: hundreds of thousands of objects)
        # lives as long as the process: left out of every collection from now on, so a
        # collection's cost follows what the syncs allocate, not what was imported. And the
        # youngest generation is collected every 100,000 allocations, not 700: a first sync
        # allocates a handful of objects per message, nearly all freed by reference counting
        # within the batch, which a low threshold scans and promotes over and over (10,000:
        # ~0.17 s more of collections in bench.first_sync's 100,000 messages than 100,000).
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        if listen_fd is None:
            _announce(address_of(sock), token)
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        await store.close()


def _announce(address: str, token: str | None) -> None:
    console.print(
        f"imapscope serve: web UI {address}/  API {address}/api/v1/ (OpenAPI: "
        f"{address}/api/v1/openapi.json)",
        soft_wrap=True,
    )
    if token:
        console.print("  first token (shown once, keep it; 'imapscope tokens create' makes more):")
        console.print(f"  {token}", soft_wrap=True)


# -- accounts --------------------------------------------------------------------------------


def read_secret(env: str | None, path: Path | None) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            fail(f"the environment variable {env} is empty or unset")
        return value
    if path:
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
    if not os.isatty(0):
        fail("no password: give --password-env VAR or --password-file PATH "
             "(there is no terminal to ask on)")  # fmt: skip
    return str(typer.prompt("Password (or token)", hide_input=True))


@accounts_app.command("add")
def accounts_add(
    email: str = typer.Argument(..., help="The mailbox address."),
    host: str = typer.Option(..., "--host", help="IMAP server."),
    port: int = typer.Option(993, "--port"),
    security: str = typer.Option("tls", "--security", help="tls, starttls or none."),
    username: str | None = typer.Option(None, "--username", help="Default: the address."),
    name: str = typer.Option("", "--name", help="A display name."),
    oauth2: bool = typer.Option(False, "--oauth2", help="The secret is an OAuth2 access token."),
    password_env: str | None = typer.Option(None, "--password-env", help="Read it from VAR."),
    password_file: Path | None = typer.Option(None, "--password-file", help="Read it from a file."),
    proxy: str | None = typer.Option(None, "--proxy", help="socks5://host:port or http://..."),
    include: list[str] = typer.Option([], "--include", help="Only this folder (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Skip this folder (repeatable)."),
    poll_interval: int = typer.Option(300, "--poll-interval", help="Seconds between polls."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Run the check first."),
    force: bool = typer.Option(False, "--force", help="Save even when verification fails."),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="Also trust the CA certificates in this PEM file (kept with it)."
    ),
    pin: str | None = typer.Option(
        None, "--pin", help="Trust only the server certificate with this SHA-256 fingerprint."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Register an account (verified with the check ladder before it is saved)."""
    from imapscope.store import AccountSpec, StoreError  # noqa: PLC0415
    from imapscope.sync import SyncOptions, SyncService  # noqa: PLC0415

    spec = AccountSpec(
        email=email, host=host, port=port, security=security, username=username or email,
        auth="oauth2" if oauth2 else "password", name=name, proxy=proxy,
        include_folders=tuple(include), exclude_folders=tuple(exclude),
        poll_interval=poll_interval,
    )  # fmt: skip
    try:
        ca_pem = ca_file.read_text() if ca_file else None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --ca-file {ca_file}: {exc}")
    try:
        spec = spec.trusting(ca_pem, pin)
        spec.validate()
    except (StoreError, ValueError) as exc:
        fail(f"--ca-file/--pin: {exc}" if isinstance(exc, ValueError) else str(exc))
    secret = read_secret(password_env, password_file)
    # The CA travels with the account: verify now and `serve` later trust the same.
    options = SyncOptions()

    async def add(store: Store) -> Any:
        return await SyncService(store, options).add(spec, secret, verify=verify, force=force)

    account = with_store(data_dir, add)
    console.print(f"added account {account.id}: {email} (serve starts syncing it)")


@accounts_app.command("list")
def accounts_list(
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    state: str | None = typer.Option(None, "--state", help="Only accounts in this state."),
    search: str | None = typer.Option(
        None, "--search", help="Only accounts whose e-mail, name or server contains this."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Every account (or those --state and --search pick) with its running state, health,
    last sync and counts."""
    from imapscope.store import AccountQuery  # noqa: PLC0415
    from imapscope.sync import STATES, SyncService  # noqa: PLC0415

    if state is not None and state not in STATES:
        fail(f"--state {state!r} is not a running state; use one of: {', '.join(STATES)}")
    query = AccountQuery(state=state, text=search) if state or search else None

    async def rows(store: Store) -> list[dict[str, Any]]:
        return [
            {
                "id": a.id, "email": a.spec.email, "host": a.spec.host, "port": a.spec.port,
                "state": a.state, "health": status["health"], "paused": a.paused,
                "last_sync": status["last_sync"], "messages": status["messages"],
                "errors": status["errors"],
            }
            for a, status in await SyncService(store).overview(query)
        ]  # fmt: skip

    found = with_store(data_dir, rows)
    if as_json:
        console.print_json(json.dumps(found))
        return
    if not found and query is not None:
        console.print("No account matches; 'imapscope accounts list' shows them all.")
        return
    if not found:
        where = data_dir or default_data_dir()
        console.print(
            f"No accounts in {where}. Add one with 'imapscope accounts add', or give the "
            "--data-dir of the serve you mean (a running 'imapscope demo' prints its own)."
        )
        return
    rows_table = table("id", "email", "server", "state", "health", "last sync", "messages",
                       "errors")  # fmt: skip
    for r in found:
        rows_table.add_row(
            str(r["id"]), r["email"], f"{r['host']}:{r['port']}", r["state"], r["health"],
            (r["last_sync"] or "never")[:19], str(r["messages"]), str(r["errors"]),
        )  # fmt: skip
    console.print(rows_table)


@accounts_app.command("show")
def accounts_show(account_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """One account's settings (never its secret) and sync status, as JSON."""
    from imapscope.store import jsonable  # noqa: PLC0415
    from imapscope.sync import SyncService  # noqa: PLC0415

    async def show(store: Store) -> dict[str, Any]:
        a = await store.account(account_id)
        spec = jsonable(a.spec)
        status = await SyncService(store).status(a)
        return {"id": a.id, "paused": a.paused, **spec, "status": status}

    console.print_json(json.dumps(with_store(data_dir, show)))


@accounts_app.command("errors")
def accounts_errors(
    account_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    data_dir: Path | None = DataDir,
) -> None:
    """The account's last 20 errors, newest first, with the fix for each."""
    from imapscope.store import jsonable  # noqa: PLC0415

    async def errors(store: Store) -> Any:
        await store.account(account_id)
        return await store.errors(account_id)

    found = with_store(data_dir, errors)
    if as_json:
        console.print_json(json.dumps([jsonable(e) for e in found]))
        return
    if not found:
        console.print("no errors recorded")
        return
    listing = table("time (UTC)", "state", "step", "code", "message", "fix", "server said")
    for e in found:
        listing.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.state, e.step, e.code, e.message,
                        e.fix, e.server_text)  # fmt: skip
    console.print(listing)


@accounts_app.command("remove")
def accounts_remove(account_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Delete an account and its local data (serve stops syncing it)."""

    async def remove(store: Store) -> None:
        await store.account(account_id)
        await store.remove_account(account_id)

    with_store(data_dir, remove)
    console.print(f"removed account {account_id}")


def _pause(account_id: int, data_dir: Path | None, paused: bool) -> None:
    async def run(store: Store) -> None:
        await store.set_paused(account_id, paused)

    with_store(data_dir, run)
    console.print(f"account {account_id} {'paused' if paused else 'resumed'}")


@accounts_app.command("pause")
def accounts_pause(account_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Stop syncing an account (its data is kept)."""
    _pause(account_id, data_dir, True)


@accounts_app.command("resume")
def accounts_resume(account_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Sync a paused account again (also retries one waiting in auth_error)."""
    _pause(account_id, data_dir, False)


# -- tokens ----------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="Who or what will use it."),
    data_dir: Path | None = DataDir,
) -> None:
    """A new token, printed once (only its hash is kept)."""

    async def create(store: Store) -> str:
        return (await store.create_token(name))[1]

    console.print(with_store(data_dir, create))


@tokens_app.command("list")
def tokens_list(
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    data_dir: Path | None = DataDir,
) -> None:
    """Tokens by id and name (the tokens themselves cannot be shown again)."""
    from imapscope.store import jsonable  # noqa: PLC0415

    found = with_store(data_dir, lambda s: s.tokens())
    if as_json:
        console.print_json(json.dumps([jsonable(t) for t in found]))
        return
    listing = table("id", "name", "created", "last used")
    for t in found:
        used = t.last_used.strftime("%Y-%m-%d %H:%M") if t.last_used else "never"
        listing.add_row(str(t.id), t.name, t.created.strftime("%Y-%m-%d %H:%M"), used)
    console.print(listing)


@tokens_app.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(...), data_dir: Path | None = DataDir) -> None:
    """Revoke a token at once."""
    with_store(data_dir, lambda s: s.revoke_token(token_id))
    console.print(f"revoked token {token_id}")


# -- demo ------------------------------------------------------------------------------------

DEMO_EXPECTED = {
    "healthy": "idle",
    "wrong password": "auth_error",
    "wrong TLS mode": "connect_error",
}


async def demo_service(
    *, user: str, password: str, port: int, tls_port: int, ca_file: Path, ui_port: int,
    once: bool, data_dir: Path,
) -> int:  # fmt: skip
    """`serve` on a fresh data directory with three sandbox accounts: one healthy, one with a
    wrong password, one pointed at the plaintext port with implicit TLS. With ``once``: wait
    until each reaches its expected state (20 s at most), print them, and return 0 if all did."""
    from imapscope.api import create_app  # noqa: PLC0415
    from imapscope.store import AccountSpec, Store  # noqa: PLC0415
    from imapscope.sync import SyncOptions, SyncService  # noqa: PLC0415

    store = await Store.open(data_dir)
    options = SyncOptions(ca_file=str(ca_file), timeout=5)
    service = SyncService(store, options, local_dir=data_dir / "workers")
    specs = {
        "healthy": (AccountSpec(f"{user}@sandbox.test", "localhost", tls_port, "tls", user,
                                name="healthy", poll_interval=60), password),
        "wrong password": (AccountSpec(f"{user}+wrong@sandbox.test", "localhost", tls_port,
                                       "tls", user, name="wrong password"), "not-the-password"),
        "wrong TLS mode": (AccountSpec(f"{user}+tls@sandbox.test", "localhost", port, "tls",
                                       user, name="wrong TLS mode"), password),
    }  # fmt: skip
    for spec, secret in specs.values():
        await store.add_account(spec, secret)
    token = await first_token(store)
    sock = bind("127.0.0.1", ui_port)
    address = address_of(sock)
    app = create_app(service, manage_service=True)
    server = http_server(app)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    console.print()
    console.print(f"imapscope serve (demo) on {address}/ with 3 sandbox accounts")
    console.print(f"  token (for the web UI and API): {token}", soft_wrap=True)
    console.print(f"  data directory (temporary):     {data_dir}")
    listing = f"imapscope accounts list --data-dir {data_dir}"
    console.print(f"  from the command line:          {listing}", soft_wrap=True)
    status = 0
    try:
        if once:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            states: dict[str, str] = {}
            while loop.time() < deadline:
                states = {a.spec.name: a.state for a in await store.accounts()}
                if states == DEMO_EXPECTED:
                    break
                await asyncio.sleep(0.1)
            settled = table("account", "state", "expected", "last error")
            for a in await store.accounts():
                errors = await store.errors(a.id)
                last = f"{errors[0].code}: {errors[0].message}" if errors else ""
                settled.add_row(a.spec.name, a.state, DEMO_EXPECTED[a.spec.name], last)
            console.print(settled)
            status = 0 if states == DEMO_EXPECTED else 2
        else:
            console.print("  Ctrl-C stops", style="dim")
            await serving
    finally:
        server.should_exit = True
        await serving
        await store.close()
    return status
