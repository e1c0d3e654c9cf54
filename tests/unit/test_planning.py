"""Misfire and overlap policies, decided from what the claim read (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pgsched.planning import DueJob, Outage, plan_claim, plan_job

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


def test_only_the_latest_due_tick_is_on_time_even_inside_the_grace() -> None:
    """Four ticks due at once (3 s late, grace 5 s): the three older ones were missed, and
    misfire=once runs one run for all of them, the latest tick's."""
    plan, _ = plan_job(due(db_now=T0 + timedelta(seconds=3)), free=4)
    assert [t.tick for t in plan.ticks] == [T0 + timedelta(seconds=i) for i in range(4)]
    assert [t.status for t in plan.ticks] == ["skipped", "skipped", "skipped", "running"]
    assert all("misfire=once runs only the latest" in (t.message or "") for t in plan.ticks[:3])
    assert "3 tick(s)" in (plan.ticks[3].message or "")
    assert "misfire=once: this run" in (plan.ticks[3].message or "")
    assert plan.next_run_at == T0 + timedelta(seconds=4)


def test_misfire_all_inside_the_grace_runs_each_tick_one_after_another() -> None:
    plan, _ = plan_job(due(misfire="all", db_now=T0 + timedelta(seconds=3)), free=4)
    assert [t.status for t in plan.ticks] == ["running", "pending", "pending", "pending"]


def test_a_tick_lines_up_behind_a_catch_up_backlog_instead_of_being_skipped() -> None:
    """overlap=skip skips a tick while a run runs, but not behind queued runs (a misfire=all
    catch-up): a backlog must not push the job's later ticks out."""
    plan, _ = plan_job(due(busy=True, queued=True), free=4)
    assert [t.status for t in plan.ticks] == ["pending"]


def test_overlap_skip_records_the_tick_when_a_run_is_still_running() -> None:
    plan, free = plan_job(due(busy=True), free=4)
    assert [(t.status, t.message) for t in plan.ticks] == [
        ("skipped", "previous run still running (overlap=skip)")
    ]
    assert free == 4


def test_overlap_queue_waits_and_allow_runs_concurrently() -> None:
    queued, _ = plan_job(due(busy=True, overlap="queue"), free=4)
    assert [t.status for t in queued.ticks] == ["pending"]
    allowed, _ = plan_job(
        due(busy=True, overlap="allow", misfire="all", db_now=T0 + timedelta(seconds=1)), free=4
    )
    assert [t.status for t in allowed.ticks] == ["running", "running"]


def test_no_free_slot_leaves_a_due_job_for_a_claim_with_room() -> None:
    plans = plan_claim([due(name="a"), due(name="b")], free=1)
    assert [(p.job_name, [t.status for t in p.ticks]) for p in plans] == [("a", ["running"])]


def late(policy: str, seconds: float = 10.5) -> DueJob:
    # the claim happens at 12:00:10.5 with a 2 s grace: 12:00:00..12:00:09 are missed (a
    # later tick is due), 12:00:10 is the latest due tick, half a second late: on time
    return due(misfire=policy, db_now=T0 + timedelta(seconds=seconds), misfire_grace=2.0)


def test_misfire_skip_records_every_missed_tick_with_the_reason() -> None:
    plan, _ = plan_job(late("skip"), free=4)
    skipped = [t for t in plan.ticks if t.status == "skipped"]
    assert [t.tick for t in skipped] == [T0 + timedelta(seconds=i) for i in range(10)]
    assert all("misfire=skip" in (t.message or "") for t in skipped)
    # the latest due tick is on time and runs normally
    assert [(t.tick, t.status) for t in plan.ticks[10:]] == [
        (T0 + timedelta(seconds=10), "running")
    ]


def test_misfire_skip_runs_nothing_when_even_the_latest_tick_is_past_the_grace() -> None:
    # ticks 12:00:00, :05 and :10 are due at 12:00:13; the latest is 3 s late, past the 2 s
    # grace: missed too, so nothing runs
    gone, _ = plan_job(
        due(
            misfire="skip",
            schedule="*/5 * * * * *",
            db_now=T0 + timedelta(seconds=13),
            misfire_grace=2.0,
        ),
        free=4,
    )
    assert [t.status for t in gone.ticks] == ["skipped"] * 3


def test_misfire_once_runs_the_missed_period_once() -> None:
    plan, _ = plan_job(late("once"), free=4)
    statuses = [t.status for t in plan.ticks]
    assert statuses == ["skipped"] * 10 + ["running"]
    assert "misfire=once: this run" in (plan.ticks[10].message or "")
    # past the grace even the latest tick is missed: it still runs, as the one run
    stale, _ = plan_job(
        due(
            misfire="once",
            schedule="*/5 * * * * *",
            db_now=T0 + timedelta(seconds=13),
            misfire_grace=2.0,
        ),
        free=4,
    )
    assert [t.status for t in stale.ticks] == ["skipped", "skipped", "running"]


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


def test_a_catch_up_past_the_cap_over_a_weekend_keeps_the_newest_ticks() -> None:
    """Hourly on weekdays 09:00-17:00, from Friday 16:00 to Monday 08:00 (Jan 2027: Friday
    the 1st, Monday the 4th): Friday's 16:00 and 17:00 are due, nothing on the weekend and
    nothing yet on Monday. With a cap of 1 only the newest (Friday 17:00) is kept, and it
    runs as the one run (misfire=once)."""
    friday = datetime(2027, 1, 1, 16, 0, tzinfo=UTC)
    plan, _ = plan_job(
        due(
            schedule="0 0 9-17 * * 1-5",
            next_run_at=friday,
            db_now=datetime(2027, 1, 4, 8, 0, tzinfo=UTC),
            misfire_cap=1,
        ),
        free=4,
    )
    assert [(t.tick, t.status) for t in plan.ticks] == [(friday.replace(hour=17), "running")]
    assert plan.next_run_at == datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def test_a_catch_up_past_the_cap_keeps_the_newest_ticks_up_to_now() -> None:
    """Every minute 09:00-17:59 on weekdays, due since Friday 17:59, claimed Monday 11:00:30
    with a cap of 100: the newest 100 ticks are Monday 09:21 .. 11:00, and 11:00 (30 s late,
    inside the grace) is the one that runs."""
    plan, _ = plan_job(
        due(
            schedule="0 * 9-17 * * 1-5",
            next_run_at=datetime(2027, 1, 1, 17, 59, tzinfo=UTC),
            db_now=datetime(2027, 1, 4, 11, 0, 30, tzinfo=UTC),
            misfire_grace=60.0,
        ),
        free=4,
    )
    ticks = [t.tick for t in plan.ticks]
    assert len(ticks) == 100
    assert ticks[0] == datetime(2027, 1, 4, 9, 21, tzinfo=UTC)
    assert ticks[-1] == datetime(2027, 1, 4, 11, 0, tzinfo=UTC)
    assert [t.status for t in plan.ticks] == ["skipped"] * 99 + ["running"]


def test_a_planner_failure_stops_that_job_with_a_recorded_reason_not_the_claim() -> None:
    broken = due(next_run_at=None)  # nothing the planner can work with
    (plan,) = plan_claim([broken, due(name="fine")], free=4)[:1]
    assert plan.next_run_at is None and plan.ticks[0].status == "failed"
    assert "could not plan" in (plan.ticks[0].message or "")
    assert [p.job_name for p in plan_claim([broken, due(name="fine")], free=4)] == ["j", "fine"]


# --- why a tick was missed: what happened, from the facts the claim had ---------------------

S = timedelta(seconds=1)
CAUSES = ("database was unreachable", "no runner that defines", "was changed at", "claim came")


def missed_messages(**kw: object) -> list[str]:
    """The messages of the ten ticks 12:00:00..:09 missed by a claim at 12:00:10.5 (grace
    2 s, misfire=skip: every missed tick is a row of its own)."""
    outage = kw.pop("outage", None)
    values: dict[str, object] = {"alive_runner": "r1", "alive_since": T0 - 60 * S, **kw}
    plan, _ = plan_job(
        due(misfire="skip", misfire_grace=2.0, db_now=T0 + 10.5 * S, **values),
        free=4,
        outage=outage,  # type: ignore[arg-type]
    )
    return [t.message or "" for t in plan.ticks if t.status == "skipped"]


def test_a_live_runner_that_claims_late_says_late_naming_itself() -> None:
    messages = missed_messages()
    assert len(messages) == 10 and len(set(messages)) == 1
    assert messages[0].startswith("missed: 10 tick(s) from 2027-01-01T12:00:00+00:00 to ")
    assert "the claim came 10.5 s late: runner r1 alive since 2027-01-01T11:59:00" in messages[0]
    assert "no runner" not in messages[0] and "database" not in messages[0].split("(")[0]


def test_ticks_before_any_live_runner_started_say_no_runner_was_alive() -> None:
    messages = missed_messages(alive_runner="r2", alive_since=T0 + 10 * S)
    assert all(
        "no runner that defines this job was alive then (the first live one, r2, started at "
        "2027-01-01T12:00:10+00:00)" in m
        for m in messages
    )
    assert not any("late" in m for m in messages)


def test_a_downtime_that_ends_in_a_late_claim_says_both_with_their_counts() -> None:
    """The runner came up at 12:00:06 and its first claim came at 12:00:10.5: the ticks
    before its start had no runner, the later ones were claimed late."""
    messages = missed_messages(alive_since=T0 + 5.5 * S)
    assert messages[:6] == [messages[0]] * 6 and "missed: 6 tick(s)" in messages[0]
    assert "no runner that defines this job was alive then" in messages[0]
    assert messages[6:] == [messages[6]] * 4 and "missed: 4 tick(s)" in messages[6]
    assert "from 2027-01-01T12:00:06+00:00 to 2027-01-01T12:00:09+00:00" in messages[6]
    assert "the claim came" in messages[6]


def test_ticks_during_this_runners_database_outage_say_the_database_was_unreachable() -> None:
    outage = Outage("r1", lost=T0 - 0.2 * S, back=T0 + 9.8 * S)
    messages = missed_messages(outage=outage)
    assert all(
        "the database was unreachable from 2027-01-01T11:59:59+00:00 to "
        "2027-01-01T12:00:09+00:00 (runner r1 could not reach it)" in m
        for m in messages
    )
    assert not any("no runner" in m or "claim came" in m for m in messages)


def test_ticks_before_a_resume_say_the_job_was_paused_or_changed_not_late() -> None:
    messages = missed_messages(changed_at=T0 + 9.5 * S)
    assert all(
        "the job or this schedule was changed at 2027-01-01T12:00:09+00:00 (paused until "
        "then, or edited) while runner r1 was alive" in m
        for m in messages
    )
    assert not any("claim came" in m or "no runner" in m for m in messages)


def test_misfire_once_the_run_for_a_catch_up_names_every_cause() -> None:
    plan, _ = plan_job(
        due(
            misfire_grace=2.0,
            db_now=T0 + 10.5 * S,
            alive_runner="r1",
            alive_since=T0 + 5.5 * S,
        ),
        free=4,
    )
    note = plan.ticks[-1].message or ""
    assert plan.ticks[-1].status == "running" and note.endswith("misfire=once: this run")
    assert "missed: 6 tick(s)" in note and "missed: 4 tick(s)" in note


instants = st.floats(min_value=-5, max_value=15).map(lambda x: T0 + x * S)


@given(
    alive_since=st.one_of(st.none(), instants),
    changed_at=st.one_of(st.none(), instants),
    outage=st.one_of(st.none(), st.tuples(instants, instants).map(sorted)),
)
def test_every_missed_tick_names_one_cause_that_holds_for_it(
    alive_since: datetime | None,
    changed_at: datetime | None,
    outage: list[datetime] | None,
) -> None:
    """Whatever the facts, each missed tick's row gives exactly one cause, the one its own
    time calls for, and the counts of its message's group add up."""
    window = None if outage is None else Outage("r1", outage[0], outage[1])
    messages = missed_messages(alive_since=alive_since, changed_at=changed_at, outage=window)
    ticks = [T0 + i * S for i in range(10)]
    for tick, message in zip(ticks, messages, strict=True):
        assert message.startswith("missed: ")
        named = [c for c in CAUSES if c in message]
        assert len(named) == 1, message
        if window is not None and window.lost <= tick <= window.back:
            expected = CAUSES[0]
        elif alive_since is None or alive_since > tick:
            expected = CAUSES[1]
        elif changed_at is not None and changed_at > tick:
            expected = CAUSES[2]
        else:
            expected = CAUSES[3]
        assert named == [expected], message
        count = int(message.removeprefix("missed: ").split(" ")[0])
        assert messages.count(message) == count
