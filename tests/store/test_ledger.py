"""The budget ledger on both backends: atomic reservations, idempotent settlement, exact totals."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import (
    BudgetExhausted,
    InvalidValue,
    NotFound,
    ReservationClosed,
    create_run,
    get_reservation,
    get_run,
    ledger_sums,
    release,
    release_open,
    reserve,
    run_usage,
    set_run_budget,
    set_tenant_budget,
    settle,
    tenant_usage,
)
from orchestrator.store.models import Run, Tenant
from tests.store.conftest import seed

D = Decimal


def _assert_totals_match_ledger(sessions: sessionmaker[Session], tenant: str, run_ids: list[str]) -> None:
    with sessions() as s:
        for run_id in run_ids:
            usage, sums = run_usage(s, run_id), ledger_sums(s, run_id=run_id)
            assert (usage.spent, usage.reserved) == (sums.spent, sums.reserved)
        usage, sums = tenant_usage(s, tenant), ledger_sums(s, tenant=tenant)
        assert (usage.spent, usage.reserved) == (sums.spent, sums.reserved)


def test_reserve_settle_release_roundtrip(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    a = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.30"), key="a")
    b = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.20"), key="b")
    with sessions() as s:
        usage = tenant_usage(s, "acme")
    assert (usage.limit, usage.spent, usage.reserved, usage.remaining) == (D(1), D(0), D("0.5"), D("0.5"))

    assert settle(sessions, a, D("0.123456789")) == D("0.123456789")
    release(sessions, b)
    with sessions() as s:
        usage = tenant_usage(s, "acme")
        assert (usage.spent, usage.reserved) == (D("0.123456789"), D(0))
        assert get_reservation(s, a).state == "settled"
        assert get_reservation(s, b).state == "released"
        assert run_usage(s, "run-1").spent == D("0.123456789")
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_same_key_returns_same_reservation_without_holding_twice(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    first = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.4"), key="node/0/gen")
    again = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.4"), key="node/0/gen")
    assert first == again
    with sessions() as s:
        assert tenant_usage(s, "acme").reserved == D("0.4")
    settle(sessions, first, D("0.1"))
    # A retried activity after the settle still gets the same (settled) reservation, nothing new is held.
    assert reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.4"), key="node/0/gen") == first
    with sessions() as s:
        assert (tenant_usage(s, "acme").spent, tenant_usage(s, "acme").reserved) == (D("0.1"), D(0))


def test_tenant_budget_exhausted_carries_its_data(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.6"), key="a")
    settle(sessions, rid, D("0.25"))
    reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.5"), key="b")
    with pytest.raises(BudgetExhausted) as info:
        reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.3"), key="c")
    err = info.value
    assert (err.scope, err.name, err.limit, err.spent, err.reserved, err.requested) == (
        "tenant",
        "acme",
        D(1),
        D("0.25"),
        D("0.5"),
        D("0.3"),
    )
    assert "rlm budget raise --tenant acme USD" in str(err)
    # Nothing was written by the refused call.
    with sessions() as s, pytest.raises(NotFound):
        get_reservation(s, "c")
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_run_budget_is_checked_too_and_none_means_only_tenant(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="10", run_budget="0.5")
    reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.5"), key="a")
    with pytest.raises(BudgetExhausted) as info:
        reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.01"), key="b")
    assert (info.value.scope, info.value.name, info.value.limit) == ("run", "run-1", D("0.5"))
    with sessions() as s:
        # The tenant's hold from the refused call was rolled back with it.
        assert tenant_usage(s, "acme").reserved == D("0.5")
    with sessions.begin() as s:
        set_run_budget(s, "run-1", None)
    reserve(sessions, run_id="run-1", tenant="acme", amount=D("5"), key="b")
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_settle_twice_counts_once(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="a")
    assert settle(sessions, rid, D("0.15")) == D("0.15")
    assert settle(sessions, rid, D("0.19")) == D("0.15")
    release(sessions, rid)  # after a settle: a no-op
    with sessions() as s:
        assert (tenant_usage(s, "acme").spent, tenant_usage(s, "acme").reserved) == (D("0.15"), D(0))
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_concurrent_settles_of_one_reservation_count_once(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="a")
    barrier = threading.Barrier(10)

    def go(i: int) -> Decimal:
        barrier.wait()
        return settle(sessions, rid, D("0.01") * (i + 1))

    with ThreadPoolExecutor(10) as pool:
        results = set(pool.map(go, range(10)))
    assert len(results) == 1
    with sessions() as s:
        assert tenant_usage(s, "acme").spent == results.pop()
        assert tenant_usage(s, "acme").reserved == D(0)


def test_actual_above_reservation_is_recorded_in_full(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.9"), key="a")
    assert settle(sessions, rid, D("1.7")) == D("1.7")
    with sessions() as s:
        usage = tenant_usage(s, "acme")
    assert (usage.spent, usage.reserved, usage.remaining) == (D("1.7"), D(0), D("-0.7"))
    with pytest.raises(BudgetExhausted):
        reserve(sessions, run_id="run-1", tenant="acme", amount=D(0), key="b")
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_settle_after_release_is_refused_and_unknown_ids_are_errors(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="a")
    release(sessions, rid)
    release(sessions, rid)
    with pytest.raises(ReservationClosed):
        settle(sessions, rid, D("0.1"))
    with pytest.raises(NotFound):
        settle(sessions, "nope", D("0.1"))
    with pytest.raises(NotFound):
        reserve(sessions, run_id="no-run", tenant="acme", amount=D("0.1"), key="x")
    with pytest.raises(InvalidValue, match="belongs to tenant 'acme'"):
        reserve(sessions, run_id="run-1", tenant="other", amount=D("0.1"), key="y")
    with pytest.raises(InvalidValue, match=">= 0"):
        reserve(sessions, run_id="run-1", tenant="acme", amount=D("-0.1"), key="z")
    with sessions.begin() as s:
        create_run(s, "run-2", tenant="acme")
    with pytest.raises(InvalidValue, match="used by run 'run-1'"):
        reserve(sessions, run_id="run-2", tenant="acme", amount=D("0.1"), key="a")
    with pytest.raises(InvalidValue, match="Decimal"):
        reserve(sessions, run_id="run-1", tenant="acme", amount=0.1, key="z")  # type: ignore[arg-type]


def test_sub_nanodollar_amounts_round_up_never_down(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    rid = reserve(sessions, run_id="run-1", tenant="acme", amount=D("1.5e-10"), key="a")
    assert settle(sessions, rid, D("3e-10")) == D("1e-9")
    with sessions() as s:
        assert tenant_usage(s, "acme").spent == D("1e-9")


def test_reserve_inside_callers_transaction(sessions: sessionmaker[Session]) -> None:
    """Given a Session, a refused reservation rolls back only its savepoint; the caller commits."""
    seed(sessions, budget="1")
    with sessions() as s:
        with s.begin():
            ok = reserve(s, run_id="run-1", tenant="acme", amount=D("0.7"), key="a")
            with pytest.raises(BudgetExhausted):
                reserve(s, run_id="run-1", tenant="acme", amount=D("0.7"), key="b")
            set_tenant_budget(s, "acme", D("2"))
        with s.begin():
            assert get_reservation(s, ok).state == "open"
            assert tenant_usage(s, "acme").limit == D(2)
            assert tenant_usage(s, "acme").reserved == D("0.7")


def test_settle_and_release_inside_callers_transaction(sessions: sessionmaker[Session]) -> None:
    """Without a savepoint of their own: a refused settle writes nothing, the caller's work stands."""
    seed(sessions, budget="1")
    with sessions() as s:
        with s.begin():
            settled = reserve(s, run_id="run-1", tenant="acme", amount=D("0.3"), key="a")
            released = reserve(s, run_id="run-1", tenant="acme", amount=D("0.2"), key="b")
            assert settle(s, settled, D("0.1")) == D("0.1")
            release(s, released)
            with pytest.raises(ReservationClosed):
                settle(s, released, D("0.05"))
            with pytest.raises(NotFound):
                settle(s, "nope", D("0.05"))
            assert settle(s, settled, D("0.9")) == D("0.1")
            set_tenant_budget(s, "acme", D("2"))
        with s.begin():
            usage = tenant_usage(s, "acme")
            assert (usage.limit, usage.spent, usage.reserved) == (D(2), D("0.1"), D(0))
            sums = ledger_sums(s, tenant="acme")
            assert (sums.spent, sums.reserved) == (usage.spent, usage.reserved)


def test_200_concurrent_reservations_against_1_usd(engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Exactly 100 of 200 reservations of $0.01 fit in $1, and spent + reserved never exceeds $1."""
    seed(sessions, budget="1", run_budget="1")
    limit = D(1)
    n = 200
    barrier = threading.Barrier(n)
    violations: list[str] = []
    done = threading.Event()
    samples = 0

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            with sessions() as s, s.begin():
                reserve(s, run_id="run-1", tenant="acme", amount=D("0.01"), key=f"k{i}")
                # Inside the reserving transaction, holding the row locks: the committed state plus ours.
                t = s.execute(select(Tenant.spent_nanos, Tenant.reserved_nanos)).one()
                r = s.execute(select(Run.spent_nanos, Run.reserved_nanos)).one()
                for scope, row in (("tenant", t), ("run", r)):
                    if row.spent_nanos + row.reserved_nanos > 10**9:
                        violations.append(f"{scope} in-transaction {row}")
            return True
        except BudgetExhausted:
            return False

    def sample() -> None:
        nonlocal samples
        with sessions() as s:
            while not done.is_set():
                with s.begin():
                    t = tenant_usage(s, "acme")
                    r = run_usage(s, "run-1")
                for usage in (t, r):
                    if usage.spent + usage.reserved > limit:
                        violations.append(f"sampled {usage}")
                samples += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(attempt, range(n)))
    finally:
        done.set()
        sampler.join()
    assert violations == []
    assert samples > 0
    assert sum(results) == 100
    with sessions() as s:
        assert tenant_usage(s, "acme").reserved == D(1)
        assert get_run(s, "run-1").reserved == D(1)
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_concurrent_reserves_and_settles_keep_totals_equal_to_ledger(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="3", run_id="run-a")
    with sessions.begin() as s:
        create_run(s, "run-b", tenant="acme", budget=D("1"))
    expected_spent: dict[str, Decimal] = {"run-a": D(0), "run-b": D(0)}
    lock = threading.Lock()
    refused = 0

    def worker(w: int) -> None:
        nonlocal refused
        rng = random.Random(w)
        for i in range(25):
            run_id = rng.choice(["run-a", "run-b"])
            amount = D(rng.randint(1, 50_000_000)).scaleb(-9)
            try:
                rid = reserve(sessions, run_id=run_id, tenant="acme", amount=amount, key=f"{w}/{i}")
            except BudgetExhausted:
                with lock:
                    refused += 1
                continue
            roll = rng.random()
            if roll < 0.2:
                release(sessions, rid)
                continue
            # Sometimes above the reservation (recorded in full), sometimes settled twice.
            actual = D(rng.randint(0, 80_000_000)).scaleb(-9)
            recorded = settle(sessions, rid, actual)
            if roll > 0.8:
                assert settle(sessions, rid, actual + D(1)) == recorded
            with lock:
                expected_spent[run_id] += recorded

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    with sessions() as s:
        for run_id, spent in expected_spent.items():
            assert run_usage(s, run_id).spent == spent
            assert run_usage(s, run_id).reserved == D(0)
        assert tenant_usage(s, "acme").spent == sum(expected_spent.values())
    _assert_totals_match_ledger(sessions, "acme", ["run-a", "run-b"])


def test_raising_budget_while_refusing_lets_next_through(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="0.05", run_budget="1")
    reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.05"), key="fill")
    refusals = threading.Semaphore(0)
    granted: list[str] = []
    stop = threading.Event()

    def keep_trying(w: int) -> None:
        while not stop.is_set():
            try:
                # The same key on every attempt, like a retried activity.
                granted.append(
                    reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.05"), key=f"w{w}")
                )
                return
            except BudgetExhausted:
                refusals.release()
                time.sleep(0.01)

    threads = [threading.Thread(target=keep_trying, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(8):  # they are being refused right now
            assert refusals.acquire(timeout=10)
        assert granted == []
        with sessions.begin() as s:
            set_tenant_budget(s, "acme", D("0.25"))
        for t in threads:
            t.join(timeout=10)
        assert len(granted) == 4
    finally:
        stop.set()
        for t in threads:
            t.join()
    # The run's own budget: raising it works the same way.
    with sessions.begin() as s:
        set_tenant_budget(s, "acme", D("10"))
        set_run_budget(s, "run-1", D("0.25"))
    with pytest.raises(BudgetExhausted) as info:
        reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.05"), key="next")
    assert info.value.scope == "run"
    with sessions.begin() as s:
        set_run_budget(s, "run-1", D("0.30"))
    reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.05"), key="next")
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_renew_reserves_again_once_the_keys_reservation_was_released(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")
    first = reserve(
        sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="r/0/1/generate", renew=True
    )
    # Open: a retried attempt gets the same reservation.
    assert (
        reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="r/0/1/generate", renew=True)
        == first
    )
    release(sessions, first)
    second = reserve(
        sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="r/0/1/generate", renew=True
    )
    release(sessions, second)
    third = reserve(
        sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="r/0/1/generate", renew=True
    )
    with sessions() as s:
        keys = [get_reservation(s, rid).key for rid in (first, second, third)]
        assert keys == ["r/0/1/generate", "r/0/1/generate~2", "r/0/1/generate~3"]
        assert get_reservation(s, third).state == "open"
        assert tenant_usage(s, "acme").reserved == D("0.2")
    # Without renew the key keeps answering with its first reservation, as a retry of that call.
    assert reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.2"), key="r/0/1/generate") == first
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])


def test_release_open_frees_what_a_node_still_holds_and_nothing_else(sessions: sessionmaker[Session]) -> None:
    seed(sessions, budget="1")

    def hold(key: str) -> str:
        return reserve(sessions, run_id="run-1", tenant="acme", amount=D("0.1"), key=key, renew=True)

    waiting, renewed, paid = (
        hold("run-1/0/2/generate"),
        hold("run-1/0/3/generate"),
        hold("run-1/0/1/generate"),
    )
    release(sessions, renewed)
    renewed = hold("run-1/0/3/generate")  # key~2
    settle(sessions, paid, D("0.05"))
    child, sibling_run = hold("run-1/0.1/leaf"), hold("run-1/0_x/leaf")

    assert release_open(sessions, run_id="run-1", key_prefix="run-1/0/") == 2
    with sessions() as s:
        states = {rid: get_reservation(s, rid).state for rid in (waiting, renewed, paid, child, sibling_run)}
        usage = tenant_usage(s, "acme")
    assert states == {
        waiting: "released",
        renewed: "released",
        paid: "settled",
        child: "open",
        sibling_run: "open",
    }
    assert (usage.spent, usage.reserved) == (D("0.05"), D("0.2"))
    assert release_open(sessions, run_id="run-1", key_prefix="run-1/0/") == 0  # nothing left: a no-op
    _assert_totals_match_ledger(sessions, "acme", ["run-1"])
