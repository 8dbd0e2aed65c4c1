"""Per-account trust: a private CA (PEM kept with the account) or a pinned certificate
fingerprint; the verify step and the running account trust the same; ``--ca-file`` adds to the
system's CAs instead of replacing them."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError
from typer.testing import CliRunner

from imapscope.api._models import AccountIn, AccountPatch
from imapscope.cli import app
from imapscope.net import client_context
from imapscope.probe import CheckOptions, Report, run_check
from imapscope.store import AccountSpec, Store, StoreError
from imapscope.sync import AccountSync, SyncOptions, SyncService, VerifyError
from imapscope.trust import colon_hex, fingerprint, normalise_pin
from tests.conftest import PASSWORD, Sandbox
from tests.scripted import ScriptedImap, serve
from tests.servers.rig import CertFiles, TestCA


def leaf_sha256(chain: Path) -> str:
    cert = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    return fingerprint(cert.public_bytes(Encoding.DER))


def tls_server(cert: CertFiles) -> ScriptedImap:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.chain, cert.key)
    return ScriptedImap(tls=context, implicit_tls=True)


def check(port: int, **trust: Any) -> Report:
    options = CheckOptions(host="localhost", port=port, security="tls", timeout=5, **trust)
    return asyncio.run(run_check(options))


def codes(report: Report) -> set[str]:
    return {f.code for f in report.findings}


def spec_for(sandbox: Sandbox, **settings: Any) -> AccountSpec:
    values: dict[str, Any] = {
        "email": "alice@example.test", "host": "localhost", "port": sandbox.server.tls_port,
        "security": "tls", "username": "alice", **settings,
    }  # fmt: skip
    return AccountSpec(**values)


async def first_state(store: Store, account_id: int, options: SyncOptions) -> str:
    """Run the account's supervisor until it is idle or has an error; that state."""
    task = asyncio.create_task(AccountSync(store, account_id, options).run())
    try:
        async with asyncio.timeout(20):
            while True:
                account = await store.account(account_id)
                if account.state == "idle":
                    return "idle"
                errors = await store.errors(account_id)
                if errors:
                    return errors[0].code
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.wait([task])


def test_a_ca_kept_with_the_account_is_what_verify_and_sync_trust(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ca_pem = sandbox.ca_file.read_text()
    no_global_ca = SyncOptions(timeout=5)  # nothing given to serve itself

    async def scenario() -> tuple[str, str, Report]:
        store = await Store.open(tmp_path / "data")
        service = SyncService(store, no_global_ca)
        try:
            # Without the CA: verification names the untrusted certificate and refuses.
            with pytest.raises(VerifyError) as refused:
                await service.add(spec_for(sandbox), PASSWORD)
            trusted = await service.add(spec_for(sandbox, ca_pem=ca_pem), PASSWORD)
            stranger = await service.add(
                spec_for(sandbox, email="bob@example.test"), PASSWORD, force=True
            )
            return (
                await first_state(store, trusted.id, no_global_ca),
                await first_state(store, stranger.id, no_global_ca),
                refused.value.report,
            )
        finally:
            await store.close()

    trusted, stranger, report = asyncio.run(scenario())
    assert "CERT_UNTRUSTED" in codes(report)
    assert trusted == "idle"
    assert stranger == "CERT_UNTRUSTED"  # the same answer as the verify step
    # The report gives the fingerprint to pin, as openssl prints it.
    assert report.tls["certificate"]["sha256"] == normalise_pin(
        colon_hex(report.tls["certificate"]["sha256"])
    )


def test_a_pinned_fingerprint_accepts_that_certificate_and_nothing_else(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    pin = leaf_sha256(sandbox.cert_file)
    unpinned = check(sandbox.server.tls_port)
    assert "CERT_UNTRUSTED" in codes(unpinned)
    assert unpinned.tls["certificate"]["sha256"] == pin

    pinned = check(sandbox.server.tls_port, pin_sha256=pin)
    assert not {c for c in codes(pinned) if c.startswith("CERT_")}
    assert pinned.tls["pinned"] == pin
    other = check(sandbox.server.tls_port, pin_sha256="ab" * 32)
    assert codes(other) >= {"CERT_PIN_MISMATCH"}
    assert other.headline is not None
    assert colon_hex(pin) in " ".join(other.headline.evidence)

    async def scenario() -> tuple[str, str]:
        store = await Store.open(tmp_path / "data")
        try:
            right = await store.add_account(spec_for(sandbox, pin_sha256=pin), PASSWORD)
            wrong = await store.add_account(
                spec_for(sandbox, email="b@example.test", pin_sha256="ab" * 32), PASSWORD
            )
            options = SyncOptions(timeout=5)
            return (await first_state(store, right.id, options),
                    await first_state(store, wrong.id, options))  # fmt: skip
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ("idle", "CERT_PIN_MISMATCH")


def test_ca_file_adds_to_the_system_roots(
    test_ca: TestCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process can watch a server with a public certificate and one with a private CA."""
    public = trustme.CA(organization_name="stand-in public CA")
    system_roots = tmp_path / "system-roots.pem"
    public.cert_pem.write_to_path(str(system_roots))
    monkeypatch.setenv("SSL_CERT_FILE", str(system_roots))  # what load_default_certs reads
    client_context.cache_clear()
    try:
        public_leaf = public.issue_cert("localhost")
        public_files = CertFiles(tmp_path / "p.key", tmp_path / "p.chain", tmp_path / "p.pem")
        public_leaf.private_key_pem.write_to_path(str(public_files.key))
        public_files.chain.write_bytes(b"".join(b.bytes() for b in public_leaf.cert_chain_pems))
        private = test_ca.issue("trust-private", "localhost")
        with serve(tls_server(public_files)) as pub, serve(tls_server(private)) as priv:
            for trust in ({"ca_file": str(test_ca.ca_file)},
                          {"ca_pem": test_ca.ca_file.read_text()}):  # fmt: skip
                assert not {c for c in codes(check(pub.port, **trust)) if c.startswith("CERT")}
                assert not {c for c in codes(check(priv.port, **trust)) if c.startswith("CERT")}
            assert "CERT_UNTRUSTED" in codes(check(priv.port))  # the private CA is needed
    finally:
        client_context.cache_clear()


def test_bad_trust_input_is_refused_with_what_to_give() -> None:
    base = {"email": "a@b.test", "host": "imap.b.test", "username": "a", "secret": "pw"}
    with pytest.raises(ValidationError, match="no PEM certificate"):
        AccountIn(**base, ca_pem="not a certificate")
    with pytest.raises(ValidationError, match="64 hex digits"):
        AccountIn(**base, pin_sha256="12:34")
    body = AccountIn(**base, pin_sha256="SHA256 Fingerprint=" + colon_hex("ab" * 32))
    assert body.pin_sha256 == "ab" * 32
    assert AccountPatch(pin_sha256=None).pin_sha256 is None  # null clears a pin
    spec = AccountSpec(email="a@b.test", host="h", port=993, security="tls", username="a",
                       ca_pem="x", pin_sha256="ab" * 32)  # fmt: skip
    with pytest.raises(StoreError, match="no PEM certificate"):
        spec.validate()
    both = AccountSpec(
        email="a@b.test",
        host="h",
        port=993,
        security="tls",
        username="a",
        ca_pem=trustme.CA().cert_pem.bytes().decode(),
        pin_sha256="ab" * 32,
    )
    with pytest.raises(StoreError, match="not both"):
        both.validate()


def test_cli_check_pin_and_accounts_add_ca_file(sandbox: Sandbox, tmp_path: Path) -> None:
    runner = CliRunner()
    pin = colon_hex(leaf_sha256(sandbox.cert_file))
    port = str(sandbox.server.tls_port)
    pinned = runner.invoke(app, ["check", "localhost", "--port", port, "-s", "tls",
                                 "--pin", pin, "--json"])  # fmt: skip
    assert pinned.exit_code == 0, pinned.output
    bad = runner.invoke(app, ["check", "localhost", "--port", port, "--pin", "12"])
    assert bad.exit_code == 3
    assert "64 hex digits" in " ".join(bad.output.split())
    (tmp_path / "pw").write_text(PASSWORD)
    added = runner.invoke(app, [
        "accounts", "add", "alice@example.test", "--host", "localhost", "--port", port,
        "--username", "alice", "--password-file", str(tmp_path / "pw"),
        "--ca-file", str(sandbox.ca_file), "--data-dir", str(tmp_path / "data"),
    ])  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = runner.invoke(app, ["accounts", "show", "1", "--data-dir", str(tmp_path / "data")])
    assert "BEGIN CERTIFICATE" in shown.output
    refused = runner.invoke(app, [
        "accounts", "add", "bob@example.test", "--host", "localhost", "--port", port,
        "--username", "bob", "--password-file", str(tmp_path / "pw"),
        "--ca-file", str(tmp_path / "pw"), "--data-dir", str(tmp_path / "data"),
    ])  # fmt: skip
    assert refused.exit_code == 1
    assert "no PEM certificate" in " ".join(refused.output.split())
