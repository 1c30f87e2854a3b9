"""The device-session processor: session events open, extend and close sessions, and their
commands' deadlines follow them (rule 3); a device's un-enrolment removes its inventory cache.
One transaction a batch."""

from __future__ import annotations


from mdmbus.services.rules.inventory_cache import remove_device_cache
from mdmbus.services.rules.refusals import Refusal, keeps_body, message
from mdmbus.services.rules.session_expiry import SessionEvent, apply_session_events
from mdmbus.streams.batch import Processor, Written, residency_route
from mdmbus.streams.classify import Accepted, as_uuid
from mdmbus.streams.context import PipelineContext

__all__ = ["sessions_processor"]


def _event(a: Accepted) -> SessionEvent:
    env, rec = a.record["envelope"], a.record
    return SessionEvent(a.tenant_id, as_uuid(env["device_id"]), as_uuid(rec["session_id"]),
                        rec["event_type"], rec["expires_at"], env["event_time"])


async def _write(ctx: PipelineContext, region: str | None, items: list[Accepted]) -> Written:
    if region is None:  # residency_route keys every record by its topic's region
        raise ValueError(f"{len(items)} records to write in no region")
    m = ctx.metrics
    sessions = [(a, _event(a)) for a in items if a.kind == "device_session"]
    unenrolled = [a for a in items if a.kind == "device_unenrolled"]
    now = ctx.clock.now_dt()
    written = Written()
    try:
        async with ctx.stores.region(region).acquire() as conn, conn.transaction():
            _, refused = await apply_session_events(conn, [ev for _, ev in sessions],
                                                    ctx.settings.command_grace_s)
            for a in unenrolled:
                written.deletions += await remove_device_cache(
                    conn, region, now, a.tenant_id, as_uuid(a.record["envelope"]["device_id"]))
    except Exception:
        m.store_batches.labels(region, "error").inc()
        raise
    m.store_batches.labels(region, "ok").inc()
    state_of = {id(ev): state for ev, state in refused}
    for a, ev in sessions:
        if id(ev) in state_of:
            reason = _REFUSAL_OF_STATE[state_of[id(ev)]]
            written.refused.append(a.refuse(reason, message(reason), keeps_body(reason)))
        else:
            m.records_stored.labels(region, "session").inc()
    return written


_REFUSAL_OF_STATE = {"retention": Refusal.TENANT_IN_RETENTION, "purged": Refusal.TENANT_DELETED,
                     None: Refusal.TENANT_NOT_ONBOARDED}


def sessions_processor() -> Processor:
    return Processor(route=residency_route, write=_write)
