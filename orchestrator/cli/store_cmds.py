"""``rlm db``, ``rlm tenant`` and ``rlm price``: schema migrations, tenant budgets and model prices.

Every bad input ends with one ``error: ...`` line on stderr and exit code 1; each command writes in a
single transaction, so a failure leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import fail, first_line, usd
from orchestrator.cli.output import JsonOpt, emit_json
from orchestrator.errors import RlmError

if TYPE_CHECKING:  # the store is imported by the commands that run, not by `rlm --help`
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from orchestrator.settings import Settings
    from orchestrator.store import BudgetUsage
    from orchestrator.store.prices import PriceSource

# Negative numbers ("-5") must reach our own validation instead of being taken for unknown options.
_ARGS = {"ignore_unknown_options": True}

db_app = typer.Typer(no_args_is_help=True, help="Database schema: upgrade, current revision, downgrade.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants and their USD budgets.")
price_app = typer.Typer(no_args_is_help=True, help="Model prices in USD per token.")


@contextmanager
def _errors(settings: Settings | None = None) -> Iterator[None]:
    from sqlalchemy.exc import DBAPIError

    from orchestrator.store import safe_url

    try:
        yield
    except RlmError as exc:
        raise fail(first_line(exc)) from None
    except BrokenPipeError:
        raise  # stdout's reader went away: the top group ends the command quietly
    except OSError as exc:
        raise fail(
            f"{exc.strerror or exc}: {exc.filename or ''}; check RLM_DATABASE_URL and RLM_DATA_DIR"
        ) from None
    except DBAPIError as exc:
        where = safe_url(settings.database_url) if settings else "the database"
        reason = first_line(exc.orig) if exc.orig is not None else first_line(exc)
        raise fail(f"database error on {where}: {reason}") from None


def _settings() -> Settings:
    from orchestrator.settings import load_settings

    with _errors():
        return load_settings()


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    from orchestrator.store import make_engine

    with _errors(settings):
        engine = make_engine(settings.database_url)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def _migrating(settings: Settings) -> Iterator[Engine]:
    """``_engine``, with alembic's refusals (an unknown revision, a downgrade target above the current
    one) as one ``error:`` line: the operator typed a wrong revision."""
    from alembic.util import CommandError

    with _engine(settings) as engine:
        try:
            yield engine
        except CommandError as exc:
            raise fail(
                f"{first_line(exc)}; `rlm db current` shows the current and newest revision "
                "('base' is before the first, 'head' the newest)"
            ) from None


@contextmanager
def _sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    from orchestrator.store import make_session_factory, prepare_schema

    with _engine(settings) as engine:
        prepare_schema(engine)
        yield make_session_factory(engine)


def _budget(text: str) -> Decimal:
    with _errors():
        return usd(text, "budget")


# --- rlm db ----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the store's tables (RLM_DATABASE_URL; default: SQLite in the data directory)."""
    from orchestrator.store import current_revision, safe_url, upgrade

    settings = _settings()
    with _migrating(settings) as engine:
        upgrade(engine, revision)
        typer.echo(f"database {safe_url(engine.url)} is at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(as_json: JsonOpt = False) -> None:
    """Show the database's schema revision and whether it is the newest."""
    from orchestrator.store import current_revision, head_revision

    settings = _settings()
    with _engine(settings) as engine:
        current, head = current_revision(engine), head_revision()
        if as_json:  # current is null before the first `rlm db upgrade`
            emit_json({"current": current, "head": head, "at_head": current == head})
        elif current == head:
            typer.echo(f"{current} (head)")
        elif current is None:
            typer.echo(f"none (head is {head}; run `rlm db upgrade`)")
        else:
            typer.echo(f"{current} (head is {head}; run `rlm db upgrade`)")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes every table.")],
) -> None:
    """Downgrade the schema to REVISION (destroys the data of the tables it removes)."""
    from orchestrator.store import current_revision, downgrade, safe_url

    settings = _settings()
    with _migrating(settings) as engine:
        downgrade(engine, revision)
        typer.echo(f"database {safe_url(engine.url)} is at revision {current_revision(engine) or 'base'}")


# --- rlm tenant ------------------------------------------------------------------------------------


def _usage_line(usage: BudgetUsage) -> str:
    from orchestrator.store import format_usd

    limit = "none" if usage.limit is None else f"{format_usd(usage.limit)} USD"
    remaining = "unlimited" if usage.remaining is None else format_usd(usage.remaining)
    return (
        f"{usage.name}: limit {limit}, spent {format_usd(usage.spent)}, "
        f"reserved {format_usd(usage.reserved)}, remaining {remaining}"
    )


def _usage_json(usage: BudgetUsage) -> dict[str, str | None]:
    """Money as exact decimal text; ``limit``/``remaining`` are null when there is no limit."""
    from orchestrator.store import format_usd

    return {
        "name": usage.name,
        "limit_usd": None if usage.limit is None else format_usd(usage.limit),
        "spent_usd": format_usd(usage.spent),
        "reserved_usd": format_usd(usage.reserved),
        "remaining_usd": None if usage.remaining is None else format_usd(usage.remaining),
    }


@tenant_app.command("create", context_settings=_ARGS)
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name: 1-128 letters, digits, '.', '_', ':', '-'.")],
    budget_usd: Annotated[str, typer.Option("--budget-usd", help="USD budget, e.g. 100 or 12.50.")],
) -> None:
    """Create a tenant with a USD budget."""
    from orchestrator.ids import check_tenant
    from orchestrator.store import create_tenant, tenant_usage

    settings = _settings()
    with _errors(settings):
        check_tenant(name)
    budget = _budget(budget_usd)
    with _sessions(settings) as sessions, _errors(settings), sessions.begin() as session:
        create_tenant(session, name, budget)
        typer.echo(_usage_line(tenant_usage(session, name)))


@tenant_app.command("set-budget", context_settings=_ARGS)
def tenant_set_budget(
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    budget_usd: Annotated[str, typer.Argument(help="New USD budget; takes effect for the next reservation.")],
) -> None:
    """Set a tenant's USD budget (raising it lets paused work reserve again at once)."""
    from orchestrator.store import set_tenant_budget, tenant_usage

    settings = _settings()
    budget = _budget(budget_usd)
    with _sessions(settings) as sessions, _errors(settings), sessions.begin() as session:
        set_tenant_budget(session, name, budget)
        typer.echo(_usage_line(tenant_usage(session, name)))


@tenant_app.command("show")
def tenant_show(
    name: Annotated[str | None, typer.Argument(help="Tenant name; all tenants when omitted.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show limit, spent, reserved and remaining USD of one tenant or of all."""
    from orchestrator.store import list_tenants, tenant_usage

    settings = _settings()
    with _sessions(settings) as sessions, _errors(settings), sessions() as session:
        if as_json:
            names = [name] if name is not None else [t.name for t in list_tenants(session)]
            usages = [_usage_json(tenant_usage(session, n)) for n in names]
            emit_json(usages[0] if name is not None else usages)
            return
        if name is not None:
            typer.echo(_usage_line(tenant_usage(session, name)))
            return
        tenants = list_tenants(session)
        if not tenants:
            typer.echo("no tenants; create one with `rlm tenant create NAME --budget-usd AMOUNT`")
        for tenant in tenants:
            typer.echo(_usage_line(tenant_usage(session, tenant.name)))


# --- rlm price -------------------------------------------------------------------------------------


@price_app.command("set", context_settings=_ARGS)
def price_set(
    model: Annotated[str, typer.Argument(help="litellm model string, e.g. openai/gpt-5-mini.")],
    input_price: Annotated[str, typer.Option("--input", help="USD per prompt token, e.g. 2.5e-7.")],
    output_price: Annotated[str, typer.Option("--output", help="USD per completion token, e.g. 2e-6.")],
) -> None:
    """Register a model's price; it takes precedence over the prices file and litellm's map."""
    from orchestrator.store import format_usd, set_price
    from orchestrator.store.prices import parse_price

    settings = _settings()
    with _errors():
        prices = (parse_price(input_price, "input price"), parse_price(output_price, "output price"))
    with _sessions(settings) as sessions, _errors(settings), sessions.begin() as session:
        price = set_price(session, model, *prices)
    typer.echo(
        f"{model}: input {format_usd(price.input_per_token)} USD/token, "
        f"output {format_usd(price.output_per_token)} USD/token (registered)"
    )


@price_app.command("show")
def price_show(
    model: Annotated[str, typer.Argument(help="litellm model string.")],
    as_json: JsonOpt = False,
) -> None:
    """Show the price a run is billed for MODEL and where it comes from (registered, file, litellm...)."""
    from orchestrator.llm import is_scripted
    from orchestrator.llm.scripted_model import parse_model
    from orchestrator.store import format_usd, price_for

    settings = _settings()
    with _sessions(settings) as sessions, _errors(settings), sessions() as session:
        if is_scripted(model):
            parse_model(model)  # a run cannot call a malformed one, whatever price is registered for it
        price = price_for(session, model, prices_file=settings.prices_file)
    if as_json:
        emit_json(
            {
                "model": model,
                "input_usd_per_token": format_usd(price.input_per_token),
                "output_usd_per_token": format_usd(price.output_per_token),
                "source": price.source,
            }
        )
        return
    typer.echo(
        f"{model}: input {format_usd(price.input_per_token)} USD/token, "
        f"output {format_usd(price.output_per_token)} USD/token ({_source_text(model, price.source)})"
    )


def _source_text(model: str, source: PriceSource) -> str:
    """Where ``rlm price show``'s price comes from, in words (``ModelPrice.source``)."""
    from orchestrator.store.prices import PriceSource

    if source == PriceSource.SCRIPTED:
        from orchestrator.llm.scripted_model import parse_model

        # Valid by now: price_show parsed it.
        own = sorted({"price_in", "price_out"} & parse_model(model).raw.keys())
        if not own:
            return "the scripted models' default price"
        return f"the model string's {'/'.join(own)}" + (
            "" if len(own) == 2 else ", else the scripted default"
        )
    return {
        PriceSource.REGISTERED: "registered with `rlm price set`",
        PriceSource.FILE: "from the prices file, RLM_PRICES_FILE",
        PriceSource.LITELLM: "from litellm's price map",
    }[source]


@price_app.command("delete")
def price_delete(
    model: Annotated[str, typer.Argument(help="litellm model string, as given to `rlm price set`.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a price registered with `rlm price set`; runs then use the prices file's or litellm's."""
    from orchestrator.store import format_usd
    from orchestrator.store.prices import delete_price

    settings = _settings()
    with _sessions(settings) as sessions, _errors(settings), sessions.begin() as session:
        price = delete_price(session, model)
    if as_json:
        emit_json(
            {
                "model": model,
                "deleted": True,
                "input_usd_per_token": format_usd(price.input_per_token),
                "output_usd_per_token": format_usd(price.output_per_token),
            }
        )
        return
    typer.echo(
        f"{model}: deleted the registered price (input {format_usd(price.input_per_token)} USD/token, "
        f"output {format_usd(price.output_per_token)} USD/token); `rlm price show {model}` shows the one "
        "runs use now"
    )
