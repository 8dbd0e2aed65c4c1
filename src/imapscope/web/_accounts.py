"""The Email Accounts page, the sync modal, an account's page (live), and the forms that add,
edit, verify, pause, resume and delete accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from imapscope.api._models import MAX_ID
from imapscope.store import AccountQuery, AccountSpec, AccountView, StoreError
from imapscope.sync import STATES, SyncService, VerifyError, check_options
from imapscope.trust import MAX_CA_PEM, colon_hex, describe_cas
from imapscope.web._charts import STRIP_RUNS, strip
from imapscope.web._common import Sess, page, service_of, start_check, web_state

AccountId = Annotated[int, Path(ge=1, le=MAX_ID)]
#: Accounts on one page of the Email Accounts page (the rows refresh every 2 seconds).
PAGE = 100
#: Messages shown on the account page (the messages page pages through all of them).
RECENT = 10


def _spec(form: dict[str, str]) -> AccountSpec:
    def folders(key: str) -> tuple[str, ...]:
        return tuple(f.strip() for f in form.get(key, "").split(",") if f.strip())

    try:
        port = int(form.get("port") or 0)
        poll = int(form.get("poll_interval") or 300)
    except ValueError as exc:
        raise StoreError("port and poll interval must be whole numbers") from exc
    spec = AccountSpec(
        email=form.get("email", "").strip(),
        name=form.get("name", "").strip(),
        host=form.get("host", "").strip(),
        port=port,
        security=form.get("security", "tls"),
        username=form.get("username", "").strip(),
        auth=form.get("auth", "password"),
        proxy=form.get("proxy", "").strip() or None,
        include_folders=folders("include_folders"),
        exclude_folders=folders("exclude_folders"),
        poll_interval=poll,
    )
    try:
        return spec.trusting(form.get("ca_pem"), form.get("pin_sha256"))
    except ValueError as exc:
        raise StoreError(str(exc)) from None


def _form_of(spec: AccountSpec) -> dict[str, str]:
    return {
        "email": spec.email, "name": spec.name, "host": spec.host, "port": str(spec.port),
        "security": spec.security, "username": spec.username, "auth": spec.auth,
        "proxy": spec.proxy or "", "include_folders": ", ".join(spec.include_folders),
        "exclude_folders": ", ".join(spec.exclude_folders),
        "poll_interval": str(spec.poll_interval), "ca_pem": spec.ca_pem or "",
        "pin_sha256": colon_hex(spec.pin_sha256) if spec.pin_sha256 else "",
    }  # fmt: skip


async def _form_fields(request: Request) -> dict[str, str]:
    """The posted form as text; an uploaded CA file becomes the ``ca_pem`` text."""
    fields: dict[str, str] = {}
    for key, value in (await request.form()).multi_items():
        if isinstance(value, UploadFile):
            data = await value.read(MAX_CA_PEM + 1)
            await value.close()
            if data:
                if len(data) > MAX_CA_PEM:
                    raise StoreError(f"the CA file is larger than {MAX_CA_PEM // 1024} KiB")
                try:
                    fields["ca_pem"] = data.decode()
                except UnicodeDecodeError:
                    raise StoreError(
                        "the CA file is not PEM text (a DER file? convert it: "
                        "openssl x509 -inform der -in ca.der -out ca.pem)"
                    ) from None
            continue
        if key != "ca_pem" or "ca_pem" not in fields:  # an upload wins over the text box
            fields[key] = value
    return fields


@dataclass(frozen=True)
class Listing:
    """What the Email Accounts page shows: a filter, one page of accounts, the next page."""

    q: str
    state: str
    after: int
    rows: list[dict[str, Any]]
    next_after: int | None

    @property
    def query(self) -> AccountQuery:
        return _query(self.q, self.state, self.after)

    @property
    def filtered(self) -> bool:
        """Not the whole list from its start (an empty page is then not "no accounts")."""
        return bool(self.q or self.state or self.after)

    def link(self, after: int | None = None) -> str:
        """This filter's query string (from ``after``, or from the start)."""
        params = {"q": self.q, "state": self.state, "after": after or ""}
        return urlencode({k: v for k, v in params.items() if v})


def _query(q: str, state: str, after: int) -> AccountQuery:
    return AccountQuery(state=state or None, text=q or None, after=min(after, MAX_ID),
                        limit=PAGE)  # fmt: skip


async def _listing(service: SyncService, request: Request) -> Listing:
    """One page of accounts (those the filter in the URL matches; what cannot be read there is
    left out: a link from a bookmark must not fail the page) with their status and, when a
    monitor watches one, that monitor's strip of last runs (the first one's)."""
    q = request.query_params.get("q", "").strip()[:200]
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    after = request.query_params.get("after", "")
    start = int(after) if after.isdigit() else 0
    found, next_after = await service.overview_page(_query(q, state, start))
    watching: dict[int, Any] = {}
    for monitor in await service.store.monitors():
        if monitor.spec.account_id is not None:
            watching.setdefault(monitor.spec.account_id, monitor)
    latest = await service.store.latest_runs(STRIP_RUNS) if watching else {}
    rows = [
        {"account": a, "status": status, "monitor": watching.get(a.id),
         "strip": strip(latest.get(watching[a.id].id, []),
                        label=f"{a.spec.email}: monitor {watching[a.id].spec.name}",
                        slots=STRIP_RUNS) if a.id in watching else None}
        for a, status in found
    ]  # fmt: skip
    return Listing(q, state, start, rows, next_after)


def _trust_of(spec: AccountSpec) -> list[str]:
    return describe_cas(spec.ca_pem) if spec.ca_pem else []


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    # (before /accounts/{account_id}, which would take "new" for an id)
    @r.get("/accounts/new")
    async def new_form(request: Request, s: Sess) -> HTMLResponse:
        blank = {"port": "993", "security": "tls", "poll_interval": "300", "auth": "password"}
        return page(request, "account_form.html", s, form=blank, report=None, error="",
                    account=None)  # fmt: skip

    @r.get("/accounts")
    async def accounts(request: Request, s: Sess) -> HTMLResponse:
        service = service_of(request)
        listing = await _listing(service, request)
        total = await service.store.account_count(listing.query)  # the rows' refresh needs none
        return page(request, "accounts.html", s, listing=listing, rows=listing.rows, total=total,
                    filtered=listing.filtered, states=STATES, page_size=PAGE)  # fmt: skip

    @r.get("/ui/accounts/rows")
    async def account_rows(request: Request, s: Sess) -> HTMLResponse:
        listing = await _listing(service_of(request), request)
        return page(request, "_rows.html", s, rows=listing.rows, filtered=listing.filtered)

    @r.get("/ui/accounts/{account_id}/modal")
    async def sync_modal(request: Request, account_id: AccountId, s: Sess) -> HTMLResponse:
        service = service_of(request)
        account = await service.store.account(account_id)
        return page(
            request, "_modal.html", s, account=account,
            status=await service.status(account),
            errors=await service.store.errors(account_id),
        )  # fmt: skip

    async def _account_context(request: Request, account_id: int) -> dict[str, Any]:
        service = service_of(request)
        account = await service.store.account(account_id)
        total, recent = await service.store.messages(account_id, limit=RECENT)
        return {
            "account": account, "folders": await service.store.folder_counts(account_id),
            "recent": recent, "total": total, "status": await service.status(account),
            "errors": await service.store.errors(account_id), "trust": _trust_of(account.spec),
        }  # fmt: skip

    @r.get("/accounts/{account_id}")
    async def account_page(request: Request, account_id: AccountId, s: Sess) -> HTMLResponse:
        return page(request, "account.html", s, **await _account_context(request, account_id))

    @r.get("/ui/accounts/{account_id}/live")
    async def account_live(request: Request, account_id: AccountId, s: Sess) -> HTMLResponse:
        context = await _account_context(request, account_id)
        return page(request, "_account_live.html", s, **context)

    # -- add, edit, verify, pause, resume, delete ---------------------------------------------

    async def _save(request: Request, s: Sess, account: AccountView | None) -> Response:
        service = service_of(request)
        form: dict[str, str] = {}
        report = None
        try:
            form = await _form_fields(request)
            secret = form.get("secret", "")
            force = form.get("force") == "on"
            spec = _spec(form)
            if form.get("action") == "verify":
                # Verify only: the check runs in the background and its steps appear as they
                # complete (the Check page's mechanism); nothing is saved.
                spec.validate()
                stored = await service.store.secret(account.id) if account else ""
                if not (secret or stored):
                    raise StoreError("enter the password (or token): the login is verified too")
                job_id = start_check(
                    request, check_options(spec, secret or stored, service.options)
                )
                form.pop("secret", None)
                job = web_state(request).checks[job_id]
                return page(request, "account_form.html", s, form=form, report=None, error="",
                            account=account, job=job, job_id=job_id)  # fmt: skip
            if account is None:
                saved = await service.add(spec, secret, force=force)
            else:
                saved = await service.update(account.id, spec, secret or None, force=force)
        except VerifyError as exc:
            report, error = exc.report, str(exc)
        except StoreError as exc:
            error = str(exc)
        else:
            return RedirectResponse(f"/accounts/{saved.id}", status_code=303)
        form.pop("secret", None)  # never sent back into the page
        return page(request, "account_form.html", s, code=422, form=form, report=report,
                    error=error, account=account)  # fmt: skip

    @r.post("/accounts/new")
    async def add(request: Request, s: Sess) -> Response:
        return await _save(request, s, None)

    @r.get("/accounts/{account_id}/edit")
    async def edit_form(request: Request, account_id: AccountId, s: Sess) -> HTMLResponse:
        account = await service_of(request).store.account(account_id)
        return page(request, "account_form.html", s, form=_form_of(account.spec), report=None,
                    error="", account=account)  # fmt: skip

    @r.post("/accounts/{account_id}/edit")
    async def edit(request: Request, account_id: AccountId, s: Sess) -> Response:
        account = await service_of(request).store.account(account_id)
        return await _save(request, s, account)

    @r.post("/accounts/{account_id}/verify")
    async def verify_stored(request: Request, account_id: AccountId, s: Sess) -> Response:
        """Check the stored settings (and stored password) now, on the Check page."""
        service = service_of(request)
        account = await service.store.account(account_id)
        secret = await service.store.secret(account_id)
        options = check_options(account.spec, secret, service.options)
        job_id = start_check(request, options, back=f"/accounts/{account_id}")
        return RedirectResponse(f"/check/{job_id}", status_code=303)

    @r.post("/accounts/{account_id}/{action}")
    async def act(request: Request, account_id: AccountId, action: str, s: Sess) -> Response:
        service = service_of(request)
        if action == "delete":
            await service.remove(account_id)
            return RedirectResponse("/accounts", status_code=303)
        if action not in ("pause", "resume"):
            return HTMLResponse(f"unknown action {action!r}", status_code=404)
        # Resume also restarts a halted or waiting account at once ("Retry now").
        await service.pause(account_id, action == "pause")
        return RedirectResponse(f"/accounts/{account_id}", status_code=303)

    return r
