"""The layering the design depends on: the codec does no IO and knows nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import imapscope.imap

CODEC = Path(imapscope.imap.__file__).parent
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "threading", "time", "trio", "anyio"}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_codec_modules_exist() -> None:
    assert len(list(CODEC.glob("*.py"))) > 5


def test_codec_does_no_io_and_imports_nothing_above_it() -> None:
    for path in CODEC.glob("*.py"):
        for module in imports_of(path):
            top = module.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {module}: the codec must do no IO"
            if top == "imapscope":
                assert module.startswith("imapscope.imap"), f"{path.name} imports {module}"


def test_no_asyncio_wait_for_in_the_package() -> None:
    """On Python 3.11 asyncio.wait_for can swallow a cancellation that lands in the same loop
    turn as its timeout or result (cpython#86296): a supervisor then never stops. The package
    uses asyncio.timeout() instead; this keeps it so."""
    package = CODEC.parent
    found = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "wait_for(" in path.read_text()
    ]
    assert found == []


def test_the_api_s_account_states_are_the_engine_s() -> None:
    """The API validates ``state`` filters against a Literal; it must name the engine's
    states, no more and no fewer."""
    from typing import get_args  # noqa: PLC0415

    from imapscope.api._models import AccountState  # noqa: PLC0415
    from imapscope.sync import STATES  # noqa: PLC0415

    assert get_args(AccountState) == STATES


def test_serve_s_start_imports_only_what_it_uses() -> None:
    """Alembic (a store already at its schema), SQLAlchemy's PostgreSQL dialect (a store on
    SQLite), lxml (no HTML body read yet), aiohttp (no webhook or channel message sent yet),
    httpx (no discovery asked) and dnspython (no --nameserver given) are imported when first
    needed: each cost 0.02-0.1 s of every start of serve, which a first sync of a big mailbox
    waits for."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys\n"
        "import imapscope.api, imapscope.cli_serve, imapscope.expect, imapscope.monitor\n"
        "import imapscope.store, imapscope.sync, imapscope.web, imapscope.webhooks\n"
        "lazy = {'aiohttp', 'alembic', 'httpx', 'dns', 'lxml'}\n"
        "found = {m.split('.')[0] for m in sys.modules} & lazy\n"
        "found |= {m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgresql')}\n"
        "print(sorted(found))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
