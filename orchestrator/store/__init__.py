"""The durable-rlm store: recursion tree, steps, blobs, REPL snapshots, the budget ledger and prices.

Typical use::

    engine = make_engine(settings.database_url)
    check_schema(engine)                     # SchemaOutdated -> run `rlm db upgrade`
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        run, created = create_run(s, run_id, tenant="acme", query_ref=put_text(s, query))
    rid = reserve(sessions, run_id=run_id, tenant="acme", amount=Decimal("0.02"), key=f"{node_id}/3/gen")
    settle(sessions, rid, cost_of(price_for(s, model), prompt_tokens, completion_tokens))

Repository functions take the caller's ``Session`` and never commit; the ledger functions own their
transaction when given a ``sessionmaker`` (see ``ledger``).
"""

from orchestrator.store.aborts import abort_requests, clear_abort_requests, request_abort, unmark
from orchestrator.store.blobs import (
    blob_exists,
    get_blob,
    get_text,
    iter_blob,
    put_blob,
    put_text,
    text_head,
)
from orchestrator.store.endings import end_node
from orchestrator.store.engine import make_engine, make_session_factory, safe_url
from orchestrator.store.errors import (
    AlreadyExists,
    BlobCorrupt,
    BudgetExhausted,
    DatabaseUnreachable,
    InvalidValue,
    NotFound,
    ReservationClosed,
    SchemaError,
    SchemaOutdated,
    SchemaTooNew,
    StoreError,
    UnknownModelPrice,
    UnknownTenant,
)
from orchestrator.store.leases import (
    drop_lease,
    live_workers,
    purge_leases,
    renew_lease,
    store_scope,
)
from orchestrator.store.ledger import (
    SessionSource,
    checked_amount,
    release,
    release_open,
    reserve,
    settle,
)
from orchestrator.store.ledger_audit import LedgerSums, Reservation, get_reservation, ledger_sums
from orchestrator.store.migrate import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    prepare_schema,
    upgrade,
)
from orchestrator.store.money import format_usd, from_nanos, parse_usd, to_nanos
from orchestrator.store.prices import ModelPrice, cost_of, price_for, set_price
from orchestrator.store.repository import (
    BudgetUsage,
    create_run,
    create_tenant,
    finish_node,
    get_node,
    get_run,
    get_tenant,
    list_nodes,
    list_runs,
    list_tenants,
    note_attempt,
    retrying_nodes,
    run_usage,
    set_node_status,
    set_run_budget,
    set_run_status,
    set_tenant_budget,
    tenant_usage,
    upsert_node,
)
from orchestrator.store.steps import (
    find_step,
    latest_snapshot,
    list_steps,
    record_step,
    save_snapshot,
    write_step,
)
from orchestrator.vocabulary import NodeKind, Status

__all__ = [
    "AlreadyExists",
    "BlobCorrupt",
    "BudgetExhausted",
    "BudgetUsage",
    "DatabaseUnreachable",
    "InvalidValue",
    "LedgerSums",
    "ModelPrice",
    "NodeKind",
    "NotFound",
    "Reservation",
    "ReservationClosed",
    "SchemaError",
    "SchemaOutdated",
    "SchemaTooNew",
    "SessionSource",
    "Status",
    "StoreError",
    "UnknownModelPrice",
    "UnknownTenant",
    "abort_requests",
    "blob_exists",
    "check_schema",
    "checked_amount",
    "clear_abort_requests",
    "cost_of",
    "create_run",
    "create_tenant",
    "current_revision",
    "downgrade",
    "drop_lease",
    "end_node",
    "find_step",
    "finish_node",
    "format_usd",
    "from_nanos",
    "get_blob",
    "get_node",
    "get_reservation",
    "get_run",
    "get_tenant",
    "get_text",
    "head_revision",
    "iter_blob",
    "latest_snapshot",
    "ledger_sums",
    "list_nodes",
    "list_runs",
    "list_steps",
    "list_tenants",
    "live_workers",
    "make_engine",
    "make_session_factory",
    "note_attempt",
    "parse_usd",
    "prepare_schema",
    "price_for",
    "purge_leases",
    "put_blob",
    "put_text",
    "record_step",
    "release",
    "release_open",
    "renew_lease",
    "request_abort",
    "reserve",
    "retrying_nodes",
    "run_usage",
    "safe_url",
    "save_snapshot",
    "set_node_status",
    "set_price",
    "set_run_budget",
    "set_run_status",
    "set_tenant_budget",
    "settle",
    "store_scope",
    "tenant_usage",
    "text_head",
    "to_nanos",
    "unmark",
    "upgrade",
    "upsert_node",
    "write_step",
]
