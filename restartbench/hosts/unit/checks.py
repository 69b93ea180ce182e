"""NGINX Unit's own checks of one run (``UnitHost.run_checks``), beyond the common metrics: what Unit's own bugs look like in the data.

From processes.parquet (role, born, title), status.parquet (Unit's /status, long format),
restarts.csv and host.log (Unit's log), ``check_run(run)`` reports:

per restart   ``old_prototypes`` / ``old_apps``: prototypes and app processes born before the restart
              still alive at ``t_i + grace`` (the 1.32.0 bug: the old prototype and its apps never
              leave); ``extra_prototypes``: prototypes beyond one per app in the last sample before
              the next action (a leftover generation living on next to the new one).
at idle       after the load ended: prototypes per app, processes of older generations, and
              ``requests.active`` / ``connections.active`` still > 0 (requests stuck for good after a
              restart under keep-alive load, seen in 1.32.0 and 1.35.0).
alerts        ``[alert]`` lines of host.log, classified: ``sendmsg(…) failed (32: Broken pipe)`` is
              logged on every restart and is noise; anything else is a finding, with a class.
crashes       every process Unit saw exit on a signal (``app process N exited on signal 11``,
              ``process N exited on signal 6``: Unit never signals its own processes, so each is a
              crash), with its role and generation (from the census, else from Unit's own
              ``… started`` lines), the restart it followed and the phase (``run`` or
              ``shutdown``), from the orchestrator's marks in host.log (restartbench.results.log_mark);
              lines after the suite's own SIGKILL are not counted. Non-zero exit codes are listed too.
shutdown      the target's stop findings (``stop_hang``: main never exited after SIGTERM) and survivors.

Returns a JSON-able dict; ``verdict`` is ``ok`` or ``findings``. Pure pandas over whole columns.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from ... import results
from .processes import LOG_START_LINE, app_of

ALERT_LINE = (r"^(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[alert\] (?P<pid>\d+)#(?P<tid>\d+) "
              r"(?P<msg>.*)$")
NOISE = r"sendmsg\(.*\) failed \(32: Broken pipe\)"
#: classes of non-noise alerts, first match wins (the IPC ones are those Unit's own test suite skips)
ALERT_CLASSES = (
    ("ipc", r"(?:sendmsg|recvmsg)\(.*\) failed"),
    ("signalfd", r"read signalfd\(.*\) failed"),
    ("app_start", r"failed to apply new conf|failed to import|failed to start|Failed to"),
    ("storage", r"Unable to create|no certificates storage"),
)
#: Unit's lines about a child that ended (nxt_main_process.c, nxt_application.c)
EXIT_LINE = (r"\[(?P<level>\w+)\] (?P<parent>\d+)#\d+ (?P<app>app )?process (?P<pid>\d+)"
             r"(?: \(isolated \d+\))? exited (?:on signal (?P<signal>\d+)(?P<core> \(core dumped\))?"
             r"|with code (?P<code>\d+))")
#: Unit's lines naming a process it started (the role of a pid the census missed): the Unit target's
START_LINE = LOG_START_LINE
REPLACED_ROLES = ("app", "prototype")
SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
           8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM"}
STUCK_KEYS = r"(?:^connections\.active$|requests\.active$)"
IDLE_SLACK_S = 0.05
EXAMPLES = 20


def check_run(run: results.Run, grace_s: float | None = None) -> dict[str, Any]:
    """All Unit checks of ``run``; ``grace_s`` defaults to the scenario's lingering grace (5 s)."""
    target = run.meta.get("target", {})
    if target.get("kind") != "unit":
        return {"applicable": False, "reason": f"target kind {target.get('kind')!r} is not unit"}
    grace = float(grace_s if grace_s is not None else run.meta.get("scenario", {}).get("grace_s", 5.0))
    procs = with_app(run.processes())
    restarts = run.restarts().sort_values("t_sent", kind="stable").reset_index(drop=True)
    idle_from = load_end(run.requests())
    per_restart = restart_checks(procs, restarts, grace, idle_from)
    idle = idle_checks(procs, run.host_status(), idle_from)
    log = run.path / "host.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    alerts = classify_alerts(text, run.meta.get("t0_wall"), restarts["t_sent"])
    shutdown = shutdown_checks(run.meta)
    exits = process_exits(text, procs)
    crashes = crash_summary(exits, len(restarts)) | {"measured": log.is_file(), "host": "Unit"}
    per_restart["crashes"] = pd.array(crashes.pop("per_restart"), dtype="Int64")
    found = findings(per_restart, idle, alerts, shutdown, crashes)
    return {"applicable": True, "version": target.get("version"), "grace_s": grace,
            "restarts": _records(per_restart), "idle": idle, "alerts": alerts, "shutdown": shutdown,
            "crashes": crashes, "findings": found, "verdict": "findings" if found else "ok"}


# -- processes --------------------------------------------------------------------------------

def with_app(procs: pd.DataFrame) -> pd.DataFrame:
    """``procs`` with an ``app`` column: the app name in prototype/app titles (NA otherwise)."""
    out = procs.copy()
    title = out["title"].astype("string") if "title" in out.columns else pd.Series(pd.NA, index=out.index,
                                                                                 dtype="string")
    names = {t: app_of(t) for t in title.dropna().unique()}              # titles repeat: parse each once
    out["app"] = title.map(names).astype("string")
    out["role"] = out["role"].astype("string")
    return out


def load_end(requests: pd.DataFrame) -> float | None:
    """When the load stopped (last request start or end), or None without requests."""
    ends = pd.concat([requests["t_start"], requests["t_end"]]).dropna()
    return float(ends.max()) + IDLE_SLACK_S if len(ends) else None


def sample_times(procs: pd.DataFrame) -> pd.Index:
    return pd.Index(procs["t"].dropna().unique()).sort_values()


def restart_checks(procs: pd.DataFrame, restarts: pd.DataFrame, grace_s: float,
                   idle_from: float | None) -> pd.DataFrame:
    """Per restart: old prototypes/apps alive at ``t_i + grace`` and extra prototypes before the next one."""
    out = restarts[["index", "kind", "t_sent", "http_status"]].copy()
    if not len(out):
        return out.assign(old_prototypes=pd.Series(dtype="Int64"), old_apps=pd.Series(dtype="Int64"),
                          extra_prototypes=pd.Series(dtype="Int64"))
    times = sample_times(procs)
    t_i = out["t_sent"]
    pos = times.searchsorted(t_i + grace_s, side="left")
    out["t_check"] = [times[p] if p < len(times) else pd.NA for p in pos]
    nxt = t_i.shift(-1)
    limit = nxt.fillna(idle_from if idle_from is not None else float("inf"))
    end = times.searchsorted(limit, side="left") - 1
    out["t_settled"] = [times[e] if 0 <= e < len(times) and times[e] >= s else pd.NA
                        for e, s in zip(end, t_i)]
    out["restart"] = range(len(out))

    check = out[["restart", "t_sent", "t_check"]].dropna().astype({"t_check": "float64"})
    rows = check.merge(procs, left_on="t_check", right_on="t")
    old = rows[is_old(rows, rows["restart"])]
    counts = old.groupby(["restart", "role"], observed=True).size().unstack(fill_value=0)
    out["old_prototypes"] = _col(counts, "prototype", out, check)
    out["old_apps"] = _col(counts, "app", out, check)

    settled = out[["restart", "t_settled"]].dropna().astype({"t_settled": "float64"})
    rows = settled.merge(procs[procs["role"] == "prototype"], left_on="t_settled", right_on="t")
    per_app = rows.groupby(["restart", rows["app"].fillna("?")]).size()
    extra = (per_app - 1).clip(lower=0).groupby(level=0).max()
    have = set(settled["restart"])
    out["extra_prototypes"] = pd.array([extra.get(r, 0) if r in have else pd.NA for r in out["restart"]],
                                       dtype="Int64")
    return out.drop(columns=["restart"])


def is_old(rows: pd.DataFrame, restart: pd.Series | int) -> pd.Series:
    """Rows of processes born before restart ``restart`` (its position in time order): by the
    census's exact ``generation``, by ``born`` only where the generation is missing."""
    gen = rows["generation"].astype("float64") if "generation" in rows.columns else pd.Series(
        float("nan"), index=rows.index)
    by_born = rows["born"] < rows["t_sent"] if "t_sent" in rows.columns else pd.Series(False, index=rows.index)
    return gen.lt(restart + 1).where(gen.notna(), by_born).astype(bool)


def _col(counts: pd.DataFrame, role: str, out: pd.DataFrame, measured: pd.DataFrame) -> pd.Series:
    """Counts of ``role`` per restart; NA where the census ended before the check time."""
    values = counts[role] if role in counts.columns else pd.Series(dtype="int64")
    have = set(measured["restart"])
    return pd.array([int(values.get(r, 0)) if r in have else pd.NA for r in out["restart"]], dtype="Int64")


def idle_checks(procs: pd.DataFrame, status: pd.DataFrame, idle_from: float | None) -> dict[str, Any]:
    """The host after the load ended: prototypes per app, old generations, stuck counters."""
    if idle_from is None:
        return {"measured": False, "reason": "no requests: cannot tell when the load ended"}
    times = sample_times(procs)
    idle_times = times[times >= idle_from]
    out: dict[str, Any] = {"measured": bool(len(idle_times)), "from_s": round(idle_from, 4),
                           "samples": int(len(idle_times))}
    if len(idle_times):
        last = procs[procs["t"] == idle_times[-1]]
        protos = last[last["role"] == "prototype"].groupby(last["app"].fillna("?")).size()
        top_gen = int(procs["generation"].max()) if len(procs) else 0
        app_like = last["role"].isin(["prototype", "app"])
        out.update(prototypes={str(k): int(v) for k, v in protos.items()},
                   extra_prototypes=int((protos - 1).clip(lower=0).sum()),
                   app_processes=int((last["role"] == "app").sum()),
                   old_processes=int((app_like & (last["generation"] < top_gen)).sum()))
    out.update(stuck_counters(status, idle_from))
    return out


def stuck_counters(status: pd.DataFrame, idle_from: float) -> dict[str, Any]:
    """The last /status values of active requests/connections after ``idle_from``; stuck if any > 0."""
    idle = status[(status["t"] >= idle_from) & status["key"].str.contains(STUCK_KEYS, regex=True)]
    if not len(idle):
        return {"status_samples": 0, "stuck": None}
    last = idle.sort_values("t", kind="stable").groupby("key")["value"].last()
    return {"status_samples": int(idle["t"].nunique()),
            "status": {str(k): float(v) for k, v in last.items()},
            "stuck": bool((last > 0).any())}


# -- the log ----------------------------------------------------------------------------------

def classify_alerts(text: str, t0_wall: float | None = None,
                    restart_times: pd.Series | None = None) -> dict[str, Any]:
    """``[alert]`` lines of a Unit log: noise (the broken-pipe sendmsg of restarts) vs findings by class.
    With ``t0_wall`` (run.json) each alert gets ``t`` (s since t0, ±1 s: the log has whole seconds in
    local time) and the restart it follows."""
    lines = pd.Series(text.splitlines(), dtype="string")
    alerts = lines.str.extract(ALERT_LINE, expand=True).dropna(subset=["msg"])
    alerts["line"] = lines[alerts.index]
    alerts["noise"] = alerts["msg"].str.contains(NOISE, regex=True)
    alerts["class"] = "other"
    for name, pattern in reversed(ALERT_CLASSES):
        alerts.loc[alerts["msg"].str.contains(pattern, regex=True), "class"] = name
    alerts.loc[alerts["noise"], "class"] = "noise"
    alerts["template"] = alerts["msg"].str.replace(r"(?<![\w.])-?\d+(?![\d:])", "N", regex=True)
    alerts["t"] = _seconds_since(alerts["ts"], t0_wall)
    if restart_times is not None and len(restart_times) and alerts["t"].notna().any():
        times = pd.Index(restart_times.dropna().sort_values())
        after = times.searchsorted(alerts["t"].fillna(-1e18) + 1.0, side="right") - 1
        alerts["restart"] = [int(a) if a >= 0 and pd.notna(t) else None for a, t in zip(after, alerts["t"])]
    else:
        alerts["restart"] = None
    real = alerts[~alerts["noise"]]
    examples = real.head(EXAMPLES)[["line", "class", "t", "restart"]]
    return {"total": int(len(alerts)), "noise": int(alerts["noise"].sum()), "findings": int(len(real)),
            "by_class": {str(k): int(v) for k, v in alerts["class"].value_counts().items()},
            "templates": {str(k): int(v) for k, v in alerts["template"].value_counts().head(20).items()},
            "examples": _records(examples)}


def log_phases(lines: pd.Series) -> pd.DataFrame:
    """For every line of host.log: the restart it follows (``restart``: the index of the last
    ``restart <i>:`` mark before it, NA before the first) and the ``phase``: ``run``, then
    ``shutdown`` after the ``stop: SIGTERM`` mark, ``killed`` after ``stop: SIGKILL``."""
    marks = lines.str.extract(results.LOG_MARK_LINE, expand=True)
    restart = pd.to_numeric(marks["arg"].where(marks["event"] == "restart"), errors="coerce")
    phase = pd.Series(pd.NA, index=lines.index, dtype="string")
    stop = marks["event"] == "stop"
    phase[stop & (marks["rest"] == "SIGTERM")] = "shutdown"
    phase[stop & (marks["rest"] == "SIGKILL")] = "killed"
    phase[marks["event"] == "start"] = "run"
    phase = phase.ffill().fillna("run")
    # a stop followed by another start (a daemon restart): the old daemon's shutdown is a restart's doing
    starts = lines.index[marks["event"] == "start"]
    for k in lines.index[stop & (marks["rest"] == "SIGTERM")]:
        later = starts[starts > k]
        if len(later):
            seg = (lines.index >= k) & (lines.index < later[0])
            phase[seg] = phase[seg].replace({"shutdown": "restarting", "killed": "restarting-killed"})
    return pd.DataFrame({"restart": restart.ffill().astype("Int64"), "phase": phase,
                         "mark": marks["event"].notna()})


def process_exits(text: str, procs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every child exit Unit logged: ``pid``, ``signal`` (NA for an exit code), ``code``,
    ``core``, ``role`` and ``generation`` (census by pid, else Unit's ``… started`` lines, else
    ``app`` for the prototype's ``app process`` lines), ``restart`` and ``phase`` (``log_phases``)
    and the ``line``."""
    lines = pd.Series(text.splitlines(), dtype="string")
    cols = ["pid", "signal", "signal_name", "code", "core", "role", "generation", "restart", "phase", "t", "line"]
    if not len(lines):
        return pd.DataFrame(columns=cols)
    where = log_phases(lines)
    hits = lines.str.extract(EXIT_LINE, expand=True).dropna(subset=["pid"])
    if not len(hits):
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"pid": hits["pid"].astype("int64"),
                        "signal": pd.to_numeric(hits["signal"]).astype("Int64"),
                        "code": pd.to_numeric(hits["code"]).astype("Int64"),
                        "core": hits["core"].notna(),
                        "restart": where.loc[hits.index, "restart"],
                        "phase": where.loc[hits.index, "phase"],
                        "line": lines[hits.index]})
    out["signal_name"] = out["signal"].map(lambda n: SIGNALS.get(int(n), f"signal {n}") if pd.notna(n) else pd.NA)
    started = lines.str.extract(START_LINE, expand=True).dropna(subset=["pid"])
    by_log = pd.Series(started["fixed"].fillna(started["kind"].map({"prototype": "prototype",
                                                                    "application": "app"})).values,
                       index=started["pid"].astype("int64")).groupby(level=0).last()
    role = pd.Series(pd.NA, index=out.index, dtype="string")
    generation = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out["t"] = float("nan")                  # when the census last saw the process (its exit follows)
    if procs is not None and len(procs):
        last = procs.sort_values("t", kind="stable").drop_duplicates("pid", keep="last").set_index("pid")
        known = out["pid"].isin(last.index)
        role[known] = last.loc[out.loc[known, "pid"], "role"].astype("string").values
        generation[known] = last.loc[out.loc[known, "pid"], "generation"].astype("int64").values
        out.loc[known, "t"] = last.loc[out.loc[known, "pid"], "t"].astype("float64").values
    role = role.fillna(out["pid"].map(by_log).astype("string"))
    role = role.mask(role.isna() & hits["app"].notna(), "app").fillna("other")
    out["role"], out["generation"] = role, generation
    return out[cols].reset_index(drop=True)


def crash_summary(exits: pd.DataFrame, n_restarts: int) -> dict[str, Any]:
    """Crashes (exits on a signal before the suite's own SIGKILL), split by what the process was
    doing: ``leaving`` (an app or prototype process replaced: born before the restart it died after,
    i.e. told to quit; the router, controller and main are never replaced by an app restart) or
    ``serving`` (everything else, the shutdown included); ``events``: each crash's role, signal,
    phase, restart and whether it was leaving (what findings are located by). ``per_restart[i]``: crashes after
    restart i's mark (before the next); ``leaving_restarts``: restarts at which a replaced process
    crashed. Also the non-zero exit codes."""
    if not len(exits):
        exits = pd.DataFrame(columns=list(exits.columns) or ["signal", "code", "phase", "restart",
                                                             "generation", "role", "signal_name"])
    crashed = exits[exits["signal"].notna() & ~exits["phase"].isin(["killed", "restarting-killed"])].copy()
    restart = pd.to_numeric(crashed["restart"], errors="coerce")
    gen = pd.to_numeric(crashed["generation"], errors="coerce")
    replaced = crashed["role"].astype(str).isin(REPLACED_ROLES)       # a restart replaces only these
    # leaving: a replaced process (born before the restart it died after) that crashed on its way out;
    # at a daemon restart every process of the old daemon is on its way out
    crashed["leaving"] = (((crashed["phase"] == "run") & restart.notna() & gen.notna() & (gen <= restart)
                           & replaced) | (crashed["phase"] == "restarting"))
    in_run = crashed[crashed["phase"].isin(["run", "restarting"])]
    per = in_run["restart"].dropna().astype(int).value_counts()
    bad_code = exits[pd.to_numeric(exits["code"], errors="coerce").fillna(0) != 0]
    by = (crashed["role"].astype(str) + " " + crashed["signal_name"].astype(str)).value_counts()
    cols = ["pid", "role", "generation", "restart", "phase", "line"]
    return {"total": int(len(crashed)),
            "serving": int((~crashed["leaving"]).sum()),
            "leaving": int(crashed["leaving"].sum()),
            "leaving_restarts": sorted(int(r) for r in crashed[crashed["leaving"]]["restart"].dropna().unique()),
            "steady": int((in_run["restart"].isna()).sum()),
            "shutdown": int((crashed["phase"] == "shutdown").sum()),
            "by_kind": {str(k): int(v) for k, v in by.items()},
            "per_restart": [int(per.get(i, 0)) for i in range(n_restarts)],
            "nonzero_exits": int(len(bad_code)),
            "events": [{"role": str(r.role), "signal": str(r.signal_name), "leaving": bool(r.leaving),
                        "phase": str(r.phase), "restart": None if pd.isna(r.restart) else int(r.restart),
                        "t": None if pd.isna(getattr(r, "t", float("nan"))) else round(float(r.t), 3)}
                       for r in crashed.itertuples()],
            "examples": _records(crashed.head(EXAMPLES)[cols[:3] + ["signal_name"] + cols[3:5] + ["leaving", "line"]])
            + _records(bad_code.head(5).reindex(columns=cols[:3] + ["code"] + cols[3:]))}


def _seconds_since(ts: pd.Series, t0_wall: float | None) -> pd.Series:
    """Unit's local ``YYYY/MM/DD HH:MM:SS`` stamps as seconds since the run's t0 (NaN without t0)."""
    if t0_wall is None or not len(ts):
        return pd.Series(float("nan"), index=ts.index, dtype="float64")
    local = pd.to_datetime(ts, format="%Y/%m/%d %H:%M:%S", errors="coerce")
    offset = _dt.datetime.fromtimestamp(float(t0_wall)).astimezone().utcoffset()
    epoch = (local - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1) - offset.total_seconds()
    return (epoch - float(t0_wall)).astype("float64")


# -- shutdown and the verdict -----------------------------------------------------------------

def shutdown_checks(meta: dict[str, Any]) -> dict[str, Any]:
    """What the target's stop recorded in run.json."""
    kinds = [f.get("kind") for f in meta.get("findings", [])]
    stop = meta.get("stop", {})
    return {"graceful": stop.get("graceful"), "stop_s": stop.get("stop_s"),
            "hang": "stop_hang" in kinds, "survivors": len(meta.get("survivors", [])),
            "survivor_roles": sorted({s.get("role", "?") for s in meta.get("survivors", [])})}


def findings(per_restart: pd.DataFrame, idle: dict, alerts: dict, shutdown: dict,
             crashes: dict | None = None) -> list[dict[str, Any]]:
    """One entry per kind of problem found (``kind``, ``detail``, and where)."""
    out = []
    if crashes and crashes.get("total"):
        kinds = ", ".join(f"{n}× {k}" for k, n in crashes["by_kind"].items())
        hit = [i for i, n in enumerate(per_restart.get("crashes", [])) if n]
        out.append({"kind": "crashes", "restarts": hit,
                    "detail": f"{crashes['total']} process crash(es): {kinds}"
                              + (f" (after restart {', '.join(map(str, hit))})" if hit else "")})
    for col, kind, what in (("old_prototypes", "lingering_prototypes", "old prototype(s)"),
                            ("old_apps", "lingering_apps", "old app process(es)"),
                            ("extra_prototypes", "extra_prototypes", "extra prototype(s)")):
        if col not in per_restart.columns:
            continue
        hit = per_restart[per_restart[col].fillna(0) > 0]
        if len(hit):
            out.append({"kind": kind, "restarts": [int(i) for i in hit["index"]],
                        "detail": f"{int(hit[col].sum())} {what} over {len(hit)} of {len(per_restart)} restarts"})
    if idle.get("extra_prototypes"):
        out.append({"kind": "idle_extra_prototypes", "detail": f"at idle: prototypes per app {idle['prototypes']}"})
    if idle.get("old_processes"):
        out.append({"kind": "idle_old_generation", "detail": f"at idle: {idle['old_processes']} app/prototype "
                                                             f"process(es) of an older generation alive"})
    if idle.get("stuck"):
        out.append({"kind": "stuck_active", "detail": f"at idle /status still shows {idle['status']}"})
    if alerts.get("findings"):
        out.append({"kind": "alerts", "detail": f"{alerts['findings']} [alert] line(s) beyond the restart "
                                                f"noise: {alerts['by_class']}"})
    if shutdown.get("hang"):
        out.append({"kind": "stop_hang", "detail": "unitd main did not exit after SIGTERM"})
    if shutdown.get("survivors"):
        out.append({"kind": "survivors", "detail": f"{shutdown['survivors']} process(es) outlived the stop "
                                                   f"({', '.join(shutdown['survivor_roles'])})"})
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-able records (NA -> None, numpy scalars -> Python)."""
    out = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out
