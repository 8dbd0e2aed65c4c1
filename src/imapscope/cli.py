"""The ``imapscope`` command line: thin commands over the library's pieces."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from imapscope import __version__
from imapscope.cli_monitors import channels_app, maintenance_app, monitors_app, report_command
from imapscope.cli_serve import accounts_app, serve_command, tokens_app

if TYPE_CHECKING:  # the sandbox is imported only by the commands that use it
    from imapscope.sandbox import FaultRule

app = typer.Typer(
    name="imapscope",
    help=(
        "Diagnose, monitor and sandbox IMAP mailboxes: which layer broke "
        "(DNS, port, TLS, certificate, password, mailbox, push) and what to do about it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"imapscope {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Diagnose, monitor and sandbox IMAP mailboxes."""


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"imapscope {__version__}")


def _fail_unknown(message: str) -> NoReturn:
    """A usage problem in ``check``: exit 3 (UNKNOWN, as Nagios plugins do), saying what to do."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(3)


def _read_secret(env: str | None, path: Path | None, what: str, prompt: bool) -> str | None:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            _fail_unknown(f"the environment variable {env} (from --{what}-env) is empty or unset")
        return value
    if path is not None:
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            _fail_unknown(f"cannot read --{what}-file {path}: {exc.strerror}")
    if prompt:
        if not sys.stdin.isatty():
            _fail_unknown(
                "no password: give --password-env VAR or --password-file PATH "
                "(there is no terminal to ask on)"
            )
        return str(typer.prompt("Password", hide_input=True))
    return None


def _ask_password(where: str) -> str | None:
    return str(typer.prompt(f"Password for {where}", hide_input=True)) or None


@app.command()
def check(
    target: str = typer.Argument(
        ..., help="The IMAP server's host name or IP address, or an email address to discover."
    ),
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port (default 993 for tls, 143 otherwise)."
    ),
    security: str = typer.Option(
        "auto", "--security", "-s", help="auto, tls (implicit, 993), starttls (143) or plain."
    ),
    user: str | None = typer.Option(
        None, "--user", "-u", help="User name; without it the ladder stops before login."
    ),
    password: str | None = typer.Option(
        None, "--password", hidden=True, help="Refused: it would show in ps and shell history."
    ),
    password_env: str | None = typer.Option(
        None, "--password-env", help="Read the password from this environment variable."
    ),
    password_file: Path | None = typer.Option(
        None, "--password-file", help="Read the password from this file."
    ),
    oauth2_token_env: str | None = typer.Option(
        None,
        "--oauth2-token-env",
        help="Read an OAuth2 access token from this environment variable.",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="Also trust the CA certificates in this PEM file."
    ),
    pin: str | None = typer.Option(
        None, "--pin", help="Trust only the server certificate with this SHA-256 fingerprint."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Do not verify the certificate (the report still shows it)."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds allowed per step."),
    mailbox: str = typer.Option("INBOX", "--mailbox", help="Mailbox to EXAMINE."),
    nameserver: str | None = typer.Option(
        None, "--nameserver", help="Use this DNS server (IP[:PORT]) for every lookup."
    ),
    allow_plaintext: bool = typer.Option(
        False, "--allow-plaintext", help="Allow unencrypted IMAP (never by default)."
    ),
    source_address: str | None = typer.Option(
        None, "--source-address", help="Connect from this local address."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (docs/check.md)."),
    nagios: bool = typer.Option(
        False, "--nagios", help="Print one Nagios plugin line with perfdata."
    ),
    transcript: bool = typer.Option(
        False, "--transcript", help="Also print the wire log (secrets redacted)."
    ),
    proxy: str | None = typer.Option(
        None, "--proxy", help="Connect through this proxy: socks5://, socks4:// or http:// URL."
    ),
    write_tests: bool = typer.Option(
        False,
        "--write-tests",
        help="Opt-in: flag round trip and push latency in a scratch folder, deleted after.",
    ),
) -> None:
    """Run the IMAP troubleshooting ladder and name what is broken, with the fix.

    Exit status follows Nagios plugins: 0 ok, 1 warning, 2 critical, 3 unknown.
    """
    import asyncio  # noqa: PLC0415 - keep `imapscope --help` fast

    from imapscope.probe import (  # noqa: PLC0415
        EXIT_CODES,
        CheckOptions,
        render_human,
        render_nagios,
        run_check,
    )

    if password is not None:
        _fail_unknown(
            "a password on the command line is visible to other users (ps) and lands in shell "
            "history; use --password-env VAR or --password-file PATH, or leave both out to be "
            "asked"
        )
    if security == "none":  # the word accounts add, the UI and the API use for plaintext
        security = "plain"
    if security not in ("auto", "tls", "starttls", "plain"):
        _fail_unknown(
            f"--security must be auto, tls, starttls or plain (or none), not {security!r}"
        )
    if security == "plain" and not allow_plaintext:
        _fail_unknown("--security plain sends the password unencrypted; add --allow-plaintext")
    if "@" in target:
        from imapscope.probe import split_address  # noqa: PLC0415

        try:
            split_address(target)
        except ValueError as exc:
            _fail_unknown(f"{exc}; give an email address or the IMAP server's host name")
        user = user or target  # discovery may refine it from the autoconfig username
    if ca_file is not None and not ca_file.is_file():
        _fail_unknown(f"--ca-file {ca_file} does not exist")
    if nameserver is not None:
        from imapscope.net import parse_nameserver  # noqa: PLC0415

        try:
            parse_nameserver(nameserver)
        except ValueError:
            _fail_unknown(
                f"--nameserver must be an IP address with an optional :PORT, not {nameserver!r}"
            )
    if proxy is not None:
        from imapscope.net import validate_proxy  # noqa: PLC0415

        try:
            validate_proxy(proxy)
        except ValueError as exc:
            _fail_unknown(f"--proxy {proxy!r}: {exc}")
    token = _read_secret(oauth2_token_env, None, "oauth2-token", prompt=False)
    secret = None
    if user is not None and token is None:
        # From a variable or file now; else asked at the terminal once the server is known
        # (after discovery and DNS: no password typed for a domain that has no mail server).
        secret = _read_secret(password_env, password_file, "password", prompt=False)
        if secret is None and not sys.stdin.isatty():
            _fail_unknown(
                "no password: give --password-env VAR or --password-file PATH "
                "(there is no terminal to ask on)"
            )
    pinned = None
    if pin is not None:
        from imapscope.trust import normalise_pin  # noqa: PLC0415

        try:
            pinned = normalise_pin(pin)
        except ValueError as exc:
            _fail_unknown(f"--pin: {exc}")
    options = CheckOptions(
        host=target, port=port, security=security, user=user, password=secret,
        oauth2_token=token, ca_file=str(ca_file) if ca_file else None, insecure=insecure,
        timeout=timeout, mailbox=mailbox, nameserver=nameserver,
        allow_plaintext=allow_plaintext, source_address=source_address, write_tests=write_tests,
        proxy=proxy, pin_sha256=pinned, ask_password=_ask_password,
    )  # fmt: skip
    report = asyncio.run(run_check(options))
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    elif nagios:
        print(render_nagios(report))
    else:
        render_human(report, console, transcript=transcript)
    raise typer.Exit(EXIT_CODES[report.status])


@app.command()
def discover(
    address: str = typer.Argument(..., help="An email address (or a mail domain)."),
    nameserver: str | None = typer.Option(
        None, "--nameserver", help="Use this DNS server (IP[:PORT]) for every lookup."
    ),
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds allowed per lookup."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Find the IMAP servers for an address: autoconfig, SRV records, MX and host guesses."""
    import asyncio  # noqa: PLC0415

    from imapscope.probe import discover as run_discovery  # noqa: PLC0415
    from imapscope.probe import split_address  # noqa: PLC0415

    try:
        split_address(address)
    except ValueError as exc:
        _fail_unknown(str(exc))
    found = asyncio.run(run_discovery(address, nameserver=nameserver, timeout=timeout))
    if as_json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        for candidate in found.candidates:
            console.print(
                f"[bold]{candidate.host}[/]:{candidate.port} {candidate.security}"
                f"  (from {candidate.source}"
                + (f", user {candidate.username}" if candidate.username else "")
                + ")"
            )
        if not found.candidates:
            console.print(f"[bold red]DISCOVERY_NONE[/]: no IMAP server found for {address}")
            if found.resolver_problem:
                console.print(f"[bold]but[/]: {found.resolver_problem}")
        for source, said in found.tried:
            console.print(f"[dim]{source}: {said}[/]")
    raise typer.Exit(0 if found.candidates else 2)


sandbox_app = typer.Typer(
    help="Run a real IMAP server (in memory) with SMTP delivery; or change a running one's faults.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(sandbox_app, name="sandbox")
fault_app = typer.Typer(help="Change a running sandbox's faults through its admin API.")
sandbox_app.add_typer(fault_app, name="fault")
DEFAULT_ADMIN = "http://127.0.0.1:1080"


@sandbox_app.callback()
def sandbox(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(
        1143, "--port", help="Plaintext port (STARTTLS offered); 0 picks one."
    ),
    tls_port: int = typer.Option(1993, "--tls-port", help="Implicit-TLS port; 0 picks one."),
    smtp_port: int = typer.Option(1025, "--smtp-port", help="SMTP port for delivery; 0 picks one."),
    user: list[str] = typer.Option(
        [], "--user", help="NAME:PASSWORD, repeatable (default: alice:alice and bob:bob)."
    ),
    open_mode: bool = typer.Option(False, "--open", help="Accept any user and password."),
    demo_messages: int = typer.Option(
        0, "--demo", help="Seed each INBOX with this many realistic messages."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Keep mail here (SQLite) so a restart loses nothing; the CA lives here too. "
        "Without it, mail is in memory.",
    ),
    fault: list[str] = typer.Option(
        [], "--fault", help="COMMAND:ACTION[:key=value,...], repeatable (docs/sandbox.md)."
    ),
    persona: list[str] = typer.Option(
        [],
        "--persona",
        help="Fail like a provider: gmail-app-password, gmail-web-login, "
        "microsoft-basic-auth-disabled, too-many-connections.",
    ),
    admin_port: int = typer.Option(
        1080, "--admin-port", help="Admin HTTP API port (faults at runtime); 0 picks one."
    ),
    tls_variant: str | None = typer.Option(
        None, "--tls-variant", help="Serve a failing certificate: expired, self-signed, wrong-host."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file with users, open mode and faults (docs/sandbox.md)."
    ),
    imap: str = typer.Option(
        "both",
        "--imap",
        help="Which IMAP to speak: both (IMAP4rev2 once a client ENABLEs it), rev1 or rev2.",
    ),
) -> None:
    """Run a real IMAP server (in memory) with SMTP delivery, for tests and demos, until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from imapscope.sandbox import FaultError, parse_rule  # noqa: PLC0415
    from imapscope.sandbox import persona as persona_rules  # noqa: PLC0415

    rules = []
    if config is not None:
        from imapscope.sandbox import ConfigError, load_config  # noqa: PLC0415

        try:
            settings = load_config(config)
        except ConfigError as exc:
            _fail_unknown(str(exc))
        rules.extend(settings.faults)
        user = [f"{name}:{secret}" for name, secret in settings.users] + list(user)
        open_mode = open_mode or settings.open_mode
        imap = settings.imap or imap
    try:
        for spec in fault:
            rules.append(parse_rule(spec))
        for name in persona:
            rules.extend(persona_rules(name))
    except (FaultError, ValueError) as exc:
        _fail_unknown(str(exc))
    from imapscope.sandbox import REVISIONS  # noqa: PLC0415

    if imap not in REVISIONS:
        _fail_unknown(f"--imap takes {', '.join(REVISIONS)}, not {imap!r}")
    _run_sandbox(
        host, port, tls_port, smtp_port, user, open_mode, demo_messages, data_dir, rules=rules,
        admin_port=admin_port, tls_variant=tls_variant, persist=data_dir is not None,
        revisions=REVISIONS[imap],
    )  # fmt: skip


def _server_context(certificates: Any, variant: str | None) -> Any:
    try:
        return certificates.server_context(variant)
    except ValueError as exc:
        _fail_unknown(f"--tls-variant: {exc}")


def _admin(method: str, url: str, **kwargs: Any) -> Any:
    import httpx  # noqa: PLC0415

    try:
        response = httpx.request(method, url, timeout=5, **kwargs)
    except httpx.HTTPError as exc:
        _fail_unknown(f"no sandbox admin API at {url} ({exc}); is `imapscope sandbox` running?")
    if response.status_code >= 400:
        _fail_unknown(response.json().get("error", response.text))
    return response.json()


@fault_app.command("add")
def fault_add(
    spec: str | None = typer.Argument(None, help="COMMAND:ACTION[:key=value,...]"),
    persona: str | None = typer.Option(None, "--persona", help="Add a provider persona instead."),
    admin: str = typer.Option(DEFAULT_ADMIN, "--admin", help="The sandbox's admin API."),
) -> None:
    """Add a fault rule (or a persona's rules) to a running sandbox."""
    if (spec is None) == (persona is None):
        _fail_unknown("give either a rule SPEC or --persona NAME")
    body = {"persona": persona} if persona else {"spec": spec}
    for rule in _admin("POST", f"{admin}/faults", json=body):
        console.print(f"added rule {rule['id']}: {rule['command']} {rule['action']}")


@fault_app.command("list")
def fault_list(
    admin: str = typer.Option(DEFAULT_ADMIN, "--admin", help="The sandbox's admin API."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a line per rule."),
) -> None:
    """List a running sandbox's fault rules."""
    rules = _admin("GET", f"{admin}/faults")
    if as_json:
        print(json.dumps(rules, indent=2))
        return
    if not rules:
        console.print("no fault rules")
    for rule in rules:
        settings = {k: v for k, v in rule.items() if k not in ("id", "command", "action")
                    and v not in (None, "", 0, 1.0, False, "before")}  # fmt: skip
        console.print(f"{rule['id']}: {rule['command']} {rule['action']} {settings or ''}")


@fault_app.command("clear")
def fault_clear(
    rule_id: int | None = typer.Argument(None, help="One rule's id; without it, every rule."),
    admin: str = typer.Option(DEFAULT_ADMIN, "--admin", help="The sandbox's admin API."),
) -> None:
    """Remove one fault rule, or all of them, from a running sandbox."""
    url = f"{admin}/faults" + ("" if rule_id is None else f"/{rule_id}")
    console.print(f"removed {_admin('DELETE', url)['removed']} rule(s)")


@app.command()
def demo(
    port: int = typer.Option(1143, "--port", help="Plaintext port; 0 picks one."),
    tls_port: int = typer.Option(1993, "--tls-port", help="Implicit-TLS port; 0 picks one."),
    smtp_port: int = typer.Option(1025, "--smtp-port", help="SMTP port; 0 picks one."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where the sandbox CA lives."),
    ui_port: int = typer.Option(8400, "--ui-port", help="Port of the web UI and API; 0 picks."),
    once: bool = typer.Option(
        False,
        "--once",
        help="Exit after the accounts settle instead of "
        "serving (exit 0 when all three reach their expected state).",
    ),
) -> None:
    """A sandbox with demo mail, `check` run against it, and `serve` with three accounts (one
    healthy, one with a wrong password, one with the wrong TLS mode); then it keeps serving."""
    _run_sandbox("127.0.0.1", port, tls_port, smtp_port, [], False, 50, data_dir, demo=True,
                 once=once, ui_port=ui_port)  # fmt: skip


def _run_sandbox(
    host: str,
    port: int,
    tls_port: int,
    smtp_port: int,
    user: list[str],
    open_mode: bool,
    demo_messages: int,
    data_dir: Path | None,
    *,
    demo: bool = False,
    once: bool = False,
    rules: Sequence[FaultRule] = (),
    admin_port: int | None = None,
    tls_variant: str | None = None,
    persist: bool = False,
    ui_port: int = 8400,
    revisions: tuple[str, ...] = ("IMAP4rev1", "IMAP4rev2"),
) -> None:
    import asyncio  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from imapscope.probe import CheckOptions, render_human, run_check  # noqa: PLC0415
    from imapscope.sandbox import (  # noqa: PLC0415
        Faults,
        SandboxServer,
        default_data_dir,
        ensure_certificates,
        open_store,
    )

    users = []
    for entry in user or ["alice:alice", "bob:bob"]:
        name, sep, secret = entry.partition(":")
        if not sep or not name:
            _fail_unknown(f"--user takes NAME:PASSWORD, not {entry!r}")
        users.append((name, secret))
    directory = data_dir or default_data_dir()
    certificates = ensure_certificates(directory)
    store = open_store(
        users, open_mode=open_mode, demo_messages=demo_messages,
        database=directory / "sandbox.sqlite3" if persist else None,
    )  # fmt: skip
    server = SandboxServer(
        store, host=host, port=port, tls_port=tls_port, smtp_port=smtp_port,
        tls_context=_server_context(certificates, tls_variant), faults=Faults(list(rules)),
        admin_port=admin_port, revisions=revisions,
    )  # fmt: skip

    async def run() -> int:
        try:
            await server.start()
        except OSError as exc:
            _fail_unknown(f"cannot listen on {host}: {exc.strerror}; choose other ports (0 picks)")
        status = 0
        try:
            if demo:
                name, secret = users[0]
                options = CheckOptions(
                    host="localhost", port=server.tls_port, security="tls", user=name,
                    password=secret, ca_file=str(certificates.ca_file), write_tests=True,
                )  # fmt: skip
                report = await run_check(options)
                render_human(report, console)
                console.print()
                status = 0 if report.status == "ok" else 2
            console.print(f"imapscope sandbox on {host}")
            console.print(f"  plaintext+STARTTLS port: {server.port}")
            console.print(f"  implicit TLS port:       {server.tls_port}")
            console.print(f"  SMTP port (delivery):    {server.smtp_port}")
            if server.admin_port is not None:
                console.print(f"  admin API (faults):      http://{host}:{server.admin_port}")
            shown = "any (open mode)" if open_mode else ", ".join(f"{n}:{p}" for n, p in users)
            console.print(f"  users (name:password):   {shown}")
            console.print(f"  CA file:                 {certificates.ca_file}")
            if persist:
                console.print(f"  mail kept in:            {directory / 'sandbox.sqlite3'}")
            if demo:
                from imapscope.cli_serve import demo_service  # noqa: PLC0415

                with tempfile.TemporaryDirectory(prefix="imapscope-demo-") as serve_dir:
                    name, secret = users[0]
                    settled = await demo_service(
                        user=name, password=secret, port=server.port, tls_port=server.tls_port or 0,
                        ca_file=certificates.ca_file, ui_port=ui_port, once=once,
                        data_dir=Path(serve_dir),
                    )  # fmt: skip
                return status or settled
            if once:
                return status
            console.print("  Ctrl-C stops", style="dim")
            await asyncio.Event().wait()
        finally:
            await server.stop()
        return status

    status = 0
    with contextlib.suppress(KeyboardInterrupt):
        status = asyncio.run(run())
    raise typer.Exit(status)


app.command("serve")(serve_command)
app.add_typer(accounts_app, name="accounts")
app.add_typer(tokens_app, name="tokens")
app.add_typer(monitors_app, name="monitors")
app.add_typer(channels_app, name="channels")
app.add_typer(maintenance_app, name="maintenance")
app.command("report")(report_command)


def main() -> None:
    """Console-script entry point."""
    app()
