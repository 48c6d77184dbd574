"""Background-job progress streamed over Server-Sent Events, database-first.

``POST /jobs`` starts a job. Each step of the job commits its progress row
and a ``job.progress`` event in one SQLite transaction; the end commits the
job's result and ``job.done`` the same way. The relay, run by the app's
lifespan, publishes each event once it has committed, to the in-process
``memory://`` adapter, and the gateway mounted at ``/realtime`` streams them:
a browser's ``EventSource``, or curl, reads ``/realtime/sse`` until
``job.done``. A client that reconnects with the last ``id:`` it saw
(``Last-Event-ID``, which ``EventSource`` sends by itself) gets what it
missed, once each, in order. ``POST /jobs`` answers with the SSE path to
watch, which starts at the job's beginning (``last_event_id=`` the channel's
position when the job was created), so a client that connects late, even
after the end, still gets every event. ``GET /jobs/{id}`` is the same state
read from the database: what a client re-fetches when the stream says
``reset`` (events were missed: history no longer holds them).

Run it (one process: the memory adapter lives in it):

    python examples/job_progress.py          # http://127.0.0.1:8000/ : start a job, watch it
    # or: uvicorn --factory examples.job_progress:create_app --timeout-graceful-shutdown 2

With curl (``-N``: print as it arrives):

    curl -s -X POST localhost:8000/jobs -H 'content-type: application/json' -d '{"steps": 20}'
    # {"job_id": 1, "channel": "jobs.1", "token": "...", "sse": "/realtime/sse?channel=jobs.1&..."}
    SSE='/realtime/sse?channel=jobs.1&...'    # the "sse" path of that answer
    curl -N "localhost:8000$SSE"              # Ctrl-C halfway; then, with the last "id:" line:
    curl -N -H 'Last-Event-ID: jobs.1:1718000000000-0' "localhost:8000$SSE"
    curl localhost:8000/jobs/1

An example, not a job queue: jobs run as tasks of the web process and stop
with it, and anyone who knows a job's id may watch it. A real app runs jobs
in its worker queue (the transaction per step is the same there) and checks
the user before handing out a token. ``REALTIME_BRIDGE_DATABASE_URL``
(``sqlite:///...``) says where the database is; by default
``job_progress.db`` in the working directory.
tests/test_examples_smoke.py runs a job to completion with a reconnect in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from realtime_bridge import Bridge, Event
from realtime_bridge.gateway import GatewaySettings, MemoryFeed
from realtime_bridge.gateway import create_app as create_gateway
from realtime_bridge.integrations.fastapi import realtime_lifespan
from realtime_bridge.outbox import Outbox

DEFAULT_DATABASE_URL = "sqlite:///job_progress.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    steps INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'running',
    result TEXT
);
CREATE TABLE IF NOT EXISTS job_progress (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    step INTEGER NOT NULL,
    percent INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (job_id, step)
);
"""


class JobRequest(BaseModel):
    steps: int = Field(default=10, ge=1, le=1000, description="how many steps the job takes")
    step_seconds: float = Field(default=0.5, ge=0, le=60, description="the work of one step")


def channel_of(job_id: int) -> str:
    return f"jobs.{job_id}"


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite:///`` URL; any other database is refused, naming the variable."""
    if not database_url.startswith("sqlite:///"):
        scheme = database_url.partition(":")[0]
        raise ValueError(
            "REALTIME_BRIDGE_DATABASE_URL: this example keeps its jobs in SQLite, so it must be "
            f"sqlite:///PATH, not a {scheme}: URL"
        )
    return Path(database_url.removeprefix("sqlite:///"))


class Jobs:
    """Jobs run as tasks of this process; each step commits its row and its event together."""

    def __init__(self, path: Path, outbox: Outbox) -> None:
        self.path = path
        self.outbox = outbox
        self._running: set[asyncio.Task[None]] = set()

    def create_tables(self) -> None:
        with closing(sqlite3.connect(self.path)) as db:
            db.executescript(SCHEMA)

    def create(self, request: JobRequest) -> int:
        """Store the job; its id."""
        with closing(sqlite3.connect(self.path)) as db, db:
            cursor = db.execute("INSERT INTO jobs (steps) VALUES (?)", (request.steps,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def start(self, job_id: int, request: JobRequest) -> None:
        """Run the job in the background, as a task of this process."""
        task = asyncio.create_task(self._run(job_id, request), name=f"job {job_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, job_id: int, request: JobRequest) -> None:
        for step in range(1, request.steps + 1):
            await asyncio.sleep(request.step_seconds)  # stands in for the real work
            await self._commit_step(job_id, step, request.steps)
        await self._commit_done(job_id, request.steps)

    async def _commit_step(self, job_id: int, step: int, steps: int) -> None:
        percent = step * 100 // steps
        state = {"job_id": job_id, "step": step, "steps": steps, "percent": percent}
        event = Event(channel=channel_of(job_id), type="job.progress", data=state)
        with closing(sqlite3.connect(self.path)) as db, db:  # one transaction: both or neither
            db.execute(
                "INSERT INTO job_progress VALUES (?, ?, ?, ?)",
                (job_id, step, percent, datetime.now(UTC).isoformat()),
            )
            db.execute("UPDATE jobs SET step = ? WHERE id = ?", (step, job_id))
            await self.outbox.enqueue(db, event)

    async def _commit_done(self, job_id: int, steps: int) -> None:
        result = f"{steps} steps done"
        state = {"job_id": job_id, "steps": steps, "percent": 100, "result": result}
        event = Event(channel=channel_of(job_id), type="job.done", data=state)
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("UPDATE jobs SET status = 'done', result = ? WHERE id = ?", (result, job_id))
            await self.outbox.enqueue(db, event)

    def state(self, job_id: int) -> dict[str, Any] | None:
        """The job and its progress rows, from the database (the source of truth)."""
        with closing(sqlite3.connect(self.path)) as db:
            db.row_factory = sqlite3.Row
            job = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None:
                return None
            rows = db.execute(
                "SELECT step, percent, at FROM job_progress WHERE job_id = ? ORDER BY step",
                (job_id,),
            ).fetchall()
        return {"job": dict(job), "progress": [dict(row) for row in rows]}

    async def aclose(self) -> None:
        """Stop the jobs still running (they stop with the process; a queue would keep them)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def create_app(database_url: str | None = None) -> FastAPI:
    """The app: the jobs API, a page, and the gateway at ``/realtime``, on one memory adapter."""
    url = database_url or os.environ.get("REALTIME_BRIDGE_DATABASE_URL") or DEFAULT_DATABASE_URL
    # One process: the memory adapter, and a token secret of this process's own.
    bridge = Bridge.from_url(f"memory://?history=10000&gateway_secret={secrets.token_urlsafe(32)}")
    outbox = Outbox(url, bridge=bridge)
    jobs = Jobs(sqlite_path(url), outbox)
    feed = MemoryFeed(bridge.primary)
    gateway_app = create_gateway(GatewaySettings(), feed=feed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.create_tables()
        try:
            yield
        finally:
            await jobs.aclose()
            await gateway_app.state.gateway.aclose()  # a mounted app's lifespan does not run

    app = FastAPI(
        lifespan=realtime_lifespan(outbox, lifespan=lifespan, migrate=True, poll_interval=0.1)
    )
    app.state.jobs = jobs
    app.state.gateway = gateway_app.state.gateway  # serve_gateway ends its streams first

    def watch(job_id: int, since: str | None = None) -> dict[str, Any]:
        """A token for the job's channel, and the SSE path that uses it (from ``since``)."""
        channel = channel_of(job_id)
        grant = bridge.authorize(channel)
        query = {"channel": channel, "token": grant["token"]}
        if since is not None:
            query["last_event_id"] = f"{channel}:{since}"  # the gateway's cursor: channel:position
        sse = f"/realtime/sse?{urlencode(query)}"
        return {"job_id": job_id, "channel": channel, **grant, "sse": sse}

    @app.post("/jobs", status_code=202)
    async def start_job(request: JobRequest) -> dict[str, Any]:
        job_id = jobs.create(request)
        # Where the job's channel is now, before its first event: watching from here
        # misses nothing, however late the client connects.
        start = (await feed.reader.latest(channel_of(job_id), 0)).position
        jobs.start(job_id, request)
        return watch(job_id, since=start)

    @app.get("/jobs/{job_id}")
    async def job_state(job_id: int) -> dict[str, Any]:
        state = jobs.state(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id}")
        return state

    @app.get("/jobs/{job_id}/token")
    async def job_token(job_id: int) -> dict[str, Any]:
        """A fresh token, for a client whose token expired (its last id still resumes)."""
        if jobs.state(job_id) is None:
            raise HTTPException(404, f"no job {job_id}")
        return watch(job_id)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    app.mount("/realtime", gateway_app)
    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Job progress</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  progress { width: 100%; height: 1.5rem; }
  #log { font: 13px/1.4 ui-monospace, monospace; color: #444; }
</style></head>
<body>
<h1>Job progress over Server-Sent Events</h1>
<p><button id="start">Start a job of 20 steps</button> <span id="status">idle</span></p>
<progress id="bar" max="100" value="0"></progress>
<ol id="log"></ol>
<script>
"use strict";
const seen = (window.seen = []); // the events shown, for people and for tests
const $ = (id) => document.getElementById(id);
$("start").onclick = async () => {
  const body = JSON.stringify({ steps: 20, step_seconds: 0.25 });
  const headers = { "content-type": "application/json" };
  const job = await (await fetch("/jobs", { method: "POST", body, headers })).json();
  $("status").textContent = `job ${job.job_id} running`;
  // EventSource reconnects by itself, sending Last-Event-ID: the gateway resumes there.
  const source = new EventSource(job.sse);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    seen.push(event);
    $("bar").value = event.data.percent;
    const item = document.createElement("li");
    item.textContent = `${event.type} ${event.data.percent}%`;
    $("log").append(item);
    if (event.type === "job.done") {
      source.close();
      $("status").textContent = `job ${job.job_id}: ${event.data.result}`;
    }
  };
  // What a "reset" says was missed is read from the database, the source of truth.
  source.addEventListener("reset", async () => {
    const state = await (await fetch(`/jobs/${job.job_id}`)).json();
    const last = state.progress.at(-1);
    $("bar").value = Math.max($("bar").value, last ? last.percent : 0);
    if (state.job.status === "done") {
      source.close();
      $("status").textContent = `job ${job.job_id}: ${state.job.result}`;
    }
  });
};
</script>
</body></html>
"""


if __name__ == "__main__":
    from realtime_bridge.gateway import serve_gateway

    async def main() -> None:
        # serve_gateway ends open streams as it stops, where plain uvicorn would wait on them.
        async with serve_gateway(app=create_app(), host="127.0.0.1", port=8000) as url:
            print(f"job progress example on {url}/ (Ctrl-C stops it)")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server has stopped cleanly
        asyncio.run(main())
