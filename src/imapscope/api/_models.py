"""The API's request and response shapes (pydantic), and the conversions from store views."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imapscope.net import check_host, validate_proxy
from imapscope.store import AccountSpec, AccountView
from imapscope.trust import MAX_CA_PEM, normalise_pin, parse_ca_pem

#: SQLite's (and PostgreSQL's bigint) largest integer: ids, offsets and cursors stop here.
MAX_ID = 2**63 - 1
#: An account's running state (the sync engine's STATES; a test keeps the two equal).
AccountState = Literal[
    "connecting", "syncing", "idle", "backoff", "auth_error", "connect_error", "paused", "disabled"
]
#: RFC 3501 §2.3.1.1: a UID is a 32-bit unsigned number.
MAX_UID = 2**32 - 1
#: Folders named in include/exclude lists, and the length of each name.
MAX_FOLDERS = 500
MAX_FOLDER_NAME = 1000

FolderList = list[Annotated[str, Field(min_length=1, max_length=MAX_FOLDER_NAME)]]


def valid_host(value: str) -> str:
    try:
        return check_host(value.strip())
    except ValueError as exc:
        raise ValueError(f"{exc}; give the IMAP server's name or IP address") from exc


def valid_ca(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    parse_ca_pem(value)  # ValueError says what is wrong
    return value.strip()


def valid_pin(value: str | None) -> str | None:
    return normalise_pin(value) if value is not None and value.strip() else None


CA_FIELD = Field(
    None, max_length=MAX_CA_PEM,
    description="CA certificates (PEM) trusted for this server besides the system's",
)  # fmt: skip
PIN_FIELD = Field(
    None, max_length=200,
    description="the SHA-256 fingerprint of the server's certificate (hex, colons allowed): "
    "then only that certificate is accepted",
)  # fmt: skip


def valid_proxy(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isprintable():
        raise ValueError("the proxy URL must be plain ASCII, like socks5://127.0.0.1:1080 "
                         "(percent-encode a user name or password)")  # fmt: skip
    try:
        return validate_proxy(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, like socks5://127.0.0.1:1080") from exc


class AccountIn(BaseModel):
    """An account to register. ``secret`` is the password, app password or OAuth2 access token
    (with ``auth: oauth2``); it is stored encrypted and never returned."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, examples=["support@example.com"])
    name: str = Field("", max_length=200)
    host: str = Field(max_length=255, examples=["imap.example.com"])
    port: int = Field(993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = Field(max_length=320)
    auth: Literal["password", "oauth2"] = "password"
    secret: str = Field(min_length=1, max_length=8000, repr=False)
    proxy: str | None = Field(None, max_length=500, examples=["socks5://127.0.0.1:1080"])
    include_folders: FolderList = Field([], max_length=MAX_FOLDERS)
    exclude_folders: FolderList = Field([], max_length=MAX_FOLDERS)
    poll_interval: int = Field(300, ge=10, le=86400)
    ca_pem: str | None = CA_FIELD
    pin_sha256: str | None = PIN_FIELD

    _host = field_validator("host")(valid_host)
    _proxy = field_validator("proxy")(valid_proxy)
    _ca = field_validator("ca_pem")(valid_ca)
    _pin = field_validator("pin_sha256")(valid_pin)


CLEARABLE = ("proxy", "secret", "ca_pem", "pin_sha256")


class AccountPatch(BaseModel):
    """Settings to change; what is left out stays as it is (the secret too)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] | None = None
    username: str | None = Field(None, max_length=320)
    auth: Literal["password", "oauth2"] | None = None
    secret: str | None = Field(None, min_length=1, max_length=8000, repr=False)
    proxy: str | None = Field(None, max_length=500)
    include_folders: FolderList | None = Field(None, max_length=MAX_FOLDERS)
    exclude_folders: FolderList | None = Field(None, max_length=MAX_FOLDERS)
    poll_interval: int | None = Field(None, ge=10, le=86400)
    ca_pem: str | None = CA_FIELD
    pin_sha256: str | None = PIN_FIELD

    _ca = field_validator("ca_pem")(valid_ca)
    _pin = field_validator("pin_sha256")(valid_pin)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else valid_host(value)

    _proxy = field_validator("proxy")(valid_proxy)

    @model_validator(mode="after")
    def _no_nulls(self) -> AccountPatch:
        """``null`` cannot clear a setting that must have a value (only ``proxy``, ``ca_pem``
        and ``pin_sha256`` can be cleared): leave a field out to keep it."""
        nulls = sorted(
            name for name in self.model_fields_set
            if getattr(self, name) is None and name not in CLEARABLE
        )  # fmt: skip
        if nulls:
            raise ValueError(
                f"{', '.join(nulls)} cannot be null: leave a field out to keep "
                "its value, or give a value (an empty list clears a folder list)"
            )
        if "secret" in self.model_fields_set and self.secret is None:
            raise ValueError("secret cannot be null: leave it out to keep the stored one")
        return self


class AccountOut(BaseModel):
    id: int
    email: str
    name: str
    host: str
    port: int
    security: str
    username: str
    auth: str
    proxy: str | None
    include_folders: list[str]
    exclude_folders: list[str]
    poll_interval: int
    ca_pem: str | None
    pin_sha256: str | None
    paused: bool
    state: str
    state_since: str
    health: str
    last_sync: str | None
    messages: int
    errors: int
    status: dict[str, Any]


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["auto", "tls", "starttls", "none"] = "auto"
    user: str | None = Field(None, max_length=320)
    password: str | None = Field(None, max_length=8000, repr=False)
    oauth2_token: str | None = Field(None, max_length=8000, repr=False)
    timeout: float = Field(10.0, gt=0, le=60)
    allow_plaintext: bool = False
    ca_pem: str | None = CA_FIELD
    pin_sha256: str | None = PIN_FIELD

    _host = field_validator("host")(valid_host)
    _ca = field_validator("ca_pem")(valid_ca)
    _pin = field_validator("pin_sha256")(valid_pin)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


SPEC_FIELDS = (
    "email", "name", "host", "port", "security", "username", "auth", "proxy",
    "include_folders", "exclude_folders", "poll_interval", "ca_pem", "pin_sha256",
)  # fmt: skip


def spec_of(body: AccountIn | AccountPatch, base: AccountSpec | None = None) -> AccountSpec:
    """The store's spec from a request body; for a patch, unset fields come from ``base``."""
    values: dict[str, Any] = {}
    for name in SPEC_FIELDS:
        value = getattr(body, name)
        if isinstance(body, AccountPatch) and name not in body.model_fields_set:
            assert base is not None
            value = getattr(base, name)
        values[name] = tuple(value) if isinstance(value, list) else value
    return AccountSpec(**values)


def account_out(account: AccountView, status: dict[str, Any]) -> AccountOut:
    spec = account.spec
    return AccountOut(
        id=account.id,
        email=spec.email,
        name=spec.name,
        host=spec.host,
        port=spec.port,
        security=spec.security,
        username=spec.username,
        auth=spec.auth,
        proxy=spec.proxy,
        include_folders=list(spec.include_folders),
        exclude_folders=list(spec.exclude_folders),
        poll_interval=spec.poll_interval,
        ca_pem=spec.ca_pem,
        pin_sha256=spec.pin_sha256,
        paused=account.paused,
        state=account.state,
        state_since=account.state_since.isoformat(),
        health=status["health"],
        last_sync=account.last_sync.isoformat() if account.last_sync else None,
        messages=status["messages"],
        errors=status["errors"],
        status=status,
    )
