"""`imapscope sandbox` as its own process for the benchmarks (open mode: any user), and what its
start-up banner says; waiting for a serve to answer and an account to be idle."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.scripted import sandbox_process

from bench.accounts_idle import stop


@dataclass(frozen=True)
class Sandbox:
    plain_port: int  # plaintext, STARTTLS offered
    tls_port: int
    smtp_port: int
    ca_file: Path


def read_banner(banner: str) -> Sandbox:
    def number(label: str) -> int:
        return int(banner.split(label)[1].split(maxsplit=1)[0])

    ca_file = Path(banner.split("CA file:")[1].split(maxsplit=1)[0])
    return Sandbox(number("plaintext+STARTTLS port:"), number("implicit TLS port:"),
                   number("SMTP port (delivery):"), ca_file)  # fmt: skip


@contextlib.contextmanager
def sandbox(directory: Path) -> Iterator[Sandbox]:
    """The sandbox in open mode, with SMTP, until the block ends."""
    proc, banner = sandbox_process(
        "--open", "--port", "0", "--tls-port", "0", "--smtp-port", "0", "--admin-port", "0",
        "--data-dir", str(directory),
    )  # fmt: skip
    try:
        yield read_banner(banner)
    finally:
        stop(proc)


def ready(api: httpx.Client, timeout: float = 30) -> None:
    """Wait until serve accepts connections (it prints its address before it listens)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.get("/livez")
            return
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_idle(api: httpx.Client, account_id: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while api.get(f"/api/v1/accounts/{account_id}").json()["state"] != "idle":
        if time.monotonic() > deadline:
            raise SystemExit(f"account {account_id} did not reach idle in {timeout:g} s")
        time.sleep(0.05)
