"""The Check page: run the ladder against any server and watch its steps complete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imapscope.probe import CheckOptions
from imapscope.web._common import Sess, find_check, page, service_of, start_check


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/check")
    async def check_form(request: Request, s: Sess) -> HTMLResponse:
        return page(request, "check.html", s, job=None, job_id="", form={"security": "auto"})

    @r.post("/check")
    async def run(request: Request, s: Sess) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        service = service_of(request)
        try:
            port = int(form["port"]) if form.get("port") else None
        except ValueError:
            return page(request, "check.html", s, code=422, job=None, job_id="", form=form,
                        error="the port must be a whole number")  # fmt: skip
        if not form.get("host", "").strip():
            return page(request, "check.html", s, code=422, job=None, job_id="", form=form,
                        error="give the server's host name")  # fmt: skip
        security = form.get("security", "auto")
        if security not in ("auto", "tls", "starttls", "none"):
            security = "auto"
        options = CheckOptions(
            host=form["host"].strip(), port=port, security=security,
            user=form.get("user") or None, password=form.get("password") or None,
            ca_file=service.options.ca_file, insecure=service.options.insecure,
            timeout=service.options.timeout,
        )  # fmt: skip
        return RedirectResponse(f"/check/{start_check(request, options)}", status_code=303)

    @r.get("/check/{job_id}")
    async def check_page(request: Request, job_id: str, s: Sess) -> HTMLResponse:
        job = await find_check(request, job_id)
        return page(request, "check.html", s, job=job, job_id=job_id, form={})

    @r.get("/ui/check/{job_id}")
    async def check_steps(request: Request, job_id: str, s: Sess) -> HTMLResponse:
        job = await find_check(request, job_id)
        return page(request, "_check.html", s, job=job, job_id=job_id)

    return r
