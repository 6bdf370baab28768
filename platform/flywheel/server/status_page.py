"""The status page (``GET /status``) and the one API route only it needed (an experiment's
MLflow runs).

The page is a static document that holds no data: its script asks for a token, keeps it in the
tab's session storage, and reads everything through ``/api/v1`` with it, refreshing every few
seconds without a reload. So the page shows exactly what the token may see: a team token its
own team's experiments and models, the admin token everything.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from flywheel.errors import PlatformError
from flywheel.server.experiments import get_experiment
from flywheel.server.routes import ERROR_RESPONSES, CallerDep, context
from flywheel.tracking import job_runs
from flywheel.wire import RunLink

router = APIRouter(responses=ERROR_RESPONSES)
page_router = APIRouter()

#: Only what the page's own inline script and style need; nothing is loaded from elsewhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@page_router.get("/status", response_class=HTMLResponse, include_in_schema=False)
def status_page() -> HTMLResponse:
    """The read-only status page (it asks for a token; the document itself holds no data)."""
    html = files("flywheel.server").joinpath("status.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/experiments/{experiment_id}/runs", response_model=list[RunLink], tags=["experiments"])
def runs(request: Request, who: CallerDep, experiment_id: str) -> list[RunLink]:
    """The experiment's own MLflow runs (one per job that recorded), with links to MLflow's UI."""
    ctx = context(request)
    with ctx.sessions.begin() as session:
        experiment = get_experiment(session, who, experiment_id)
        job_id = experiment.id
    uri = ctx.settings.tracking_uri
    ui = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    try:
        found = job_runs(uri, job_id)
    except Exception as e:  # MLflow down or refusing: the page shows it, the API says 503
        raise PlatformError(f"MLflow cannot list the runs ({type(e).__name__})") from e
    links = []
    for r in found:
        url = f"{ui}/#/experiments/{r.experiment_id}/runs/{r.run_id}" if ui else None
        links.append(RunLink(run_id=r.run_id, status=r.status, url=url))
    return links
