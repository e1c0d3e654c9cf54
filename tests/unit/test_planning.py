"""Misfire and overlap policies, decided from what the claim read (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgsched.planning import DueJob, plan_claim, plan_job

T0 = datetime(2027, 1, 1, 12, 0, 0, tzinfo=UTC)


def due(**kw: object) -> DueJob:
    values: dict[str, object] = dict(
        name="j",
        schedule="* * * * * *",
        timezone="UTC",
        next_run_at=T0,
        overlap="skip",
        misfire="once",
        misfire_grace=5.0,
        misfire_cap=100,
        busy=False,
        db_now=T0,
    )
    values.update(kw)
    return DueJob(**values)  # type: ignore[arg-type]


def test_one_due_tick_starts_here_and_next_run_moves_past_now() -> None:
    plan, free = plan_job(due(db_now=T0 + timedelta(milliseconds=3)), free=4)
    assert [(t.tick, t.status) for t in plan.ticks] == [(T0, "running")]
    assert plan.next_run_at == T0 + timedelta(seconds=1)
    assert free == 3


def test_ticks_within_grace_all_run_one_after_another() -> None:
    plan, _ = plan_job(due(db_now=T0 + timedelta(seconds=3)), free=4)
    assert [t.status for t in plan.ticks] == ["running", "pending", "pending", "pending"]
    assert [t.tick for t in plan.ticks] == [T0 + timedelta(seconds=i) for i in range(4)]
    assert plan.next_run_at == T0 + timedelta(seconds=4)


def test_overlap_skip_records_the_tick_when_a_run_is_still_running() -> None:
    plan, free = plan_job(due(busy=True), free=4)
    assert [(t.status, t.message) for t in plan.ticks] == [
        ("skipped", "previous run still running (overlap=skip)")
    ]
    assert free == 4


def test_overlap_queue_waits_and_allow_runs_concurrently() -> None:
    queued, _ = plan_job(due(busy=True, overlap="queue"), free=4)
    assert [t.status for t in queued.ticks] == ["pending"]
    allowed, _ = plan_job(due(busy=True, overlap="allow", db_now=T0 + timedelta(seconds=1)), free=4)
    assert [t.status for t in allowed.ticks] == ["running", "running"]


def test_no_free_slot_leaves_a_due_job_for_a_claim_with_room() -> None:
    plans = plan_claim([due(name="a"), due(name="b")], free=1)
    assert [(p.job_name, [t.status for t in p.ticks]) for p in plans] == [("a", ["running"])]


def late(policy: str) -> DueJob:
    # the claim happens at 12:00:10.5 with a 2 s grace: 12:00:00..12:00:08 are missed,
    # 12:00:09 and 12:00:10 are merely late
    return due(misfire=policy, db_now=T0 + timedelta(seconds=10.5), misfire_grace=2.0)


def test_misfire_skip_records_every_missed_tick_with_the_reason() -> None:
    plan, _ = plan_job(late("skip"), free=4)
    skipped = [t for t in plan.ticks if t.status == "skipped"]
    assert [t.tick for t in skipped] == [T0 + timedelta(seconds=i) for i in range(9)]
    assert all("misfire=skip" in (t.message or "") for t in skipped)
    # the two ticks still inside the grace run normally
    assert [t.status for t in plan.ticks[9:]] == ["running", "pending"]


def test_misfire_once_runs_the_missed_period_once() -> None:
    plan, _ = plan_job(late("once"), free=4)
    statuses = [t.status for t in plan.ticks]
    assert statuses[:8] == ["skipped"] * 8
    assert plan.ticks[8].status == "running" and "misfire=once" in (plan.ticks[8].message or "")
    assert statuses[9:] == ["pending", "pending"]


def test_misfire_all_runs_every_missed_tick_up_to_the_cap() -> None:
    plan, _ = plan_job(late("all"), free=4)
    assert [t.status for t in plan.ticks] == ["running"] + ["pending"] * 10
    capped, _ = plan_job(
        due(misfire="all", misfire_cap=3, misfire_grace=2.0, db_now=T0 + timedelta(seconds=10.5)),
        free=4,
    )
    assert len(capped.ticks) == 3
    assert "misfire_cap=3" in (capped.ticks[0].message or "")
    assert capped.next_run_at == T0 + timedelta(seconds=11)


def test_unreadable_schedule_stops_the_job_with_a_recorded_reason() -> None:
    (plan,) = plan_claim([due(schedule="61 * * * * *")], free=4)
    assert plan.next_run_at is None
    (tick,) = plan.ticks
    assert tick.status == "failed" and "61 * * * * *" in (tick.message or "")


def test_misfire_once_over_the_cap_runs_the_latest_missed_tick() -> None:
    # a day of every-second ticks was missed; only the newest misfire_cap are recorded
    plan, _ = plan_job(
        due(
            misfire="once",
            misfire_cap=5,
            misfire_grace=2.0,
            db_now=T0 + timedelta(days=1, seconds=0.5),
        ),
        free=4,
    )
    ran = [t for t in plan.ticks if t.status != "skipped"]
    assert len(plan.ticks) == 5
    assert max(t.tick for t in ran) == T0 + timedelta(days=1)
    assert plan.next_run_at == T0 + timedelta(days=1, seconds=1)


def test_tick_within_the_lookahead_is_claimed_to_start_at_its_time() -> None:
    early = due(next_run_at=T0 + timedelta(seconds=1), db_now=T0 + timedelta(milliseconds=600))
    [plan] = plan_claim([early], free=2, ahead=2)
    assert [(t.tick, t.status) for t in plan.ticks] == [(early.next_run_at, "running")]
    assert plan.next_run_at == early.next_run_at + timedelta(seconds=1)


def test_tick_within_the_lookahead_is_left_alone_when_its_claim_must_decide() -> None:
    """Busy or queued (the claim at its time decides skip or queue), or no room ahead."""
    soon = T0 + timedelta(seconds=1)
    assert plan_claim([due(next_run_at=soon, busy=True)], free=2, ahead=2) == []
    assert plan_claim([due(next_run_at=soon, queued=True, overlap="queue")], 2, 2) == []
    assert plan_claim([due(next_run_at=soon)], free=2, ahead=0) == []
    allowed = plan_claim([due(next_run_at=soon, busy=True, overlap="allow")], free=2, ahead=2)
    assert [t.status for t in allowed[0].ticks] == ["running"]


def test_ticks_claimed_ahead_have_an_allowance_of_their_own() -> None:
    """Due ticks take the free slots; ticks not due yet the `ahead` allowance."""
    now_due, later = due(name="a"), due(name="b", next_run_at=T0 + timedelta(seconds=1))
    later_too = due(name="c", next_run_at=T0 + timedelta(seconds=1))
    assert [p.job_name for p in plan_claim([now_due, later], free=1, ahead=1)] == ["a", "b"]
    assert [p.job_name for p in plan_claim([now_due, later], free=0, ahead=1)] == ["b"]
    assert [p.job_name for p in plan_claim([now_due, later], free=1, ahead=0)] == ["a"]
    assert [p.job_name for p in plan_claim([later, later_too], free=5, ahead=1)] == ["b"]
