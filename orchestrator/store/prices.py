"""Model prices (USD per token): operator-registered first, then litellm's bundled price map.

Lookup order for ``price_for``: the ``model_prices`` table (``rlm price set``), then the prices file
(``RLM_PRICES_FILE``, JSON or TOML), then, for a scripted model, its string (its ``price_in`` /
``price_out``, else the scripted default), else ``litellm.model_cost``. A model found nowhere raises
``UnknownModelPrice`` -- a missing price is never treated as free. Only that last source imports
litellm.

Prices file format (JSON shown; TOML uses one table per model)::

    {"openai/my-finetune": {"input_per_token": "3e-7", "output_per_token": "1.2e-6"}}
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.orm import Session

from orchestrator.llm import is_scripted
from orchestrator.llm.scripted_model import parse_model
from orchestrator.store import validate
from orchestrator.store._sql import run, upsert
from orchestrator.store.errors import InvalidValue, NotFound, UnknownModelPrice
from orchestrator.store.models import ModelPriceRow, utcnow

MODEL_MAX = 255

_PRICES = cast(Table, ModelPriceRow.__table__)
# Every model call looks its price up: built once, executed with parameters (see _sql.py).
_REGISTERED = select(_PRICES.c.input_per_token, _PRICES.c.output_per_token).where(
    _PRICES.c.model == bindparam("model")
)
_UNREGISTER = (
    delete(_PRICES)
    .where(_PRICES.c.model == bindparam("model"))
    .returning(_PRICES.c.input_per_token, _PRICES.c.output_per_token)
)


class PriceSource(StrEnum):
    """Where ``price_for`` found a price."""

    REGISTERED = "registered"  # the model_prices table: `rlm price set`
    FILE = "file"  # RLM_PRICES_FILE
    SCRIPTED = "scripted"  # a scripted model's string: its price_in/price_out, else the default
    LITELLM = "litellm"  # litellm's bundled price map


@dataclass(frozen=True)
class ModelPrice:
    input_per_token: Decimal
    output_per_token: Decimal
    source: PriceSource = PriceSource.REGISTERED


def cost_of(price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Exact cost in USD (no rounding; the ledger rounds up to whole nano-dollars)."""
    validate.count(prompt_tokens, "prompt tokens")
    validate.count(completion_tokens, "completion tokens")
    with localcontext() as ctx:
        ctx.prec = 60
        return price.input_per_token * prompt_tokens + price.output_per_token * completion_tokens


# A token at more than this is a typo (the dearest models cost about 1e-4 USD a token); such a price
# would also make a call's worst case overflow the ledger.
MAX_PRICE_PER_TOKEN = Decimal(1000)
PRICE_CHARS = 64  # DecimalText's column


def parse_price(value: object, what: str) -> Decimal:
    """A per-token price from text or a number; floats go through their shortest repr (no binary noise)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InvalidValue(f"{what} must be a number of USD per token, got {value!r}")
    try:
        price = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidValue(f"{what} {value!r} is not a number; give USD per token, e.g. 1.5e-7") from None
    if not price.is_finite() or price < 0:
        raise InvalidValue(f"{what} {value!r} must be a finite number >= 0 (USD per token)")
    if price > MAX_PRICE_PER_TOKEN:
        raise InvalidValue(
            f"{what} {value!r} is more than {MAX_PRICE_PER_TOKEN} USD per token; give USD per token, "
            "e.g. 1.5e-7 for $0.15 per million"
        )
    if len(format(price, "f")) > PRICE_CHARS:
        raise InvalidValue(
            f"{what} {value!r} has more digits than a stored price keeps ({PRICE_CHARS} characters as "
            "plain decimal text); round it"
        )
    return price


def set_price(
    session: Session, model: str, input_per_token: Decimal, output_per_token: Decimal
) -> ModelPrice:
    """Register (or replace) a model's price in the database. Does not commit."""
    validate.text_id(model, "model", MODEL_MAX)
    price = ModelPrice(
        parse_price(input_per_token, "input price"),
        parse_price(output_per_token, "output price"),
        PriceSource.REGISTERED,
    )
    now = utcnow()
    values = {
        "model": model,
        "input_per_token": price.input_per_token,
        "output_per_token": price.output_per_token,
        "updated_at": now,
    }
    update = {k: v for k, v in values.items() if k != "model"}
    upsert(session, ModelPriceRow, values, ["model"], update)
    return price


def delete_price(session: Session, model: str) -> ModelPrice:
    """Remove a model's registered price and return it; its runs are then priced from the prices file or
    litellm's map. ``NotFound`` when none is registered. Does not commit."""
    row = run(session, _UNREGISTER, {"model": model}).one_or_none()
    if row is None:
        raise NotFound(
            "registered price for model",
            model,
            f"check the name: `rlm price show {model}` says where its price comes from",
        )
    return ModelPrice(row.input_per_token, row.output_per_token, PriceSource.REGISTERED)


def price_for(session: Session, model: str, *, prices_file: Path | None = None) -> ModelPrice:
    row = run(session, _REGISTERED, {"model": model}).one_or_none()
    if row is not None:
        return ModelPrice(row.input_per_token, row.output_per_token, PriceSource.REGISTERED)
    if prices_file is not None:
        found = file_prices(prices_file).get(model)
        if found is not None:
            return found
    if is_scripted(model):
        return scripted_price(model)
    found = litellm_price(model)
    if found is None:
        raise UnknownModelPrice(model)
    return found


def file_prices(path: Path) -> dict[str, ModelPrice]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise InvalidValue(f"prices file {path} (RLM_PRICES_FILE) cannot be read: {exc.strerror}") from None
    return _load_prices_file(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_prices_file(path: str, _mtime_ns: int, _size: int) -> dict[str, ModelPrice]:
    # Cached by (path, mtime, size): an edited file is read again on the next lookup.
    raw = Path(path).read_bytes()
    try:
        if path.endswith(".toml"):
            data: Any = tomllib.loads(raw.decode("utf-8"), parse_float=Decimal)
        else:
            data = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValue(
            f"prices file {path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidValue(f"prices file {path} must map model names to prices")
    prices: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or not {"input_per_token", "output_per_token"} <= entry.keys():
            raise InvalidValue(
                f"prices file {path}: entry {model!r} needs input_per_token and output_per_token "
                "(USD per token)"
            )
        prices[model] = ModelPrice(
            parse_price(entry["input_per_token"], f"{path}: {model} input_per_token"),
            parse_price(entry["output_per_token"], f"{path}: {model} output_per_token"),
            PriceSource.FILE,
        )
    return prices


def _litellm_cost_map() -> dict[str, Any]:
    from orchestrator.llm import litellm_import_settings

    litellm_import_settings()  # the bundled price map, no .env file
    import litellm

    cost_map: dict[str, Any] = litellm.model_cost
    return cost_map


def litellm_price(model: str) -> ModelPrice | None:
    cost_map = _litellm_cost_map()
    entry = cost_map.get(model)
    if entry is None and "/" in model:
        # "openai/gpt-5-mini" is listed as "gpt-5-mini" with litellm_provider "openai".
        provider, bare = model.split("/", 1)
        candidate = cost_map.get(bare)
        if isinstance(candidate, dict) and candidate.get("litellm_provider") == provider:
            entry = candidate
    if not isinstance(entry, dict):
        return None
    input_cost, output_cost = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if input_cost is None or output_cost is None:
        return None
    return ModelPrice(
        parse_price(input_cost, f"litellm input price of {model}"),
        parse_price(output_cost, f"litellm output price of {model}"),
        PriceSource.LITELLM,
    )


def scripted_price(model: str) -> ModelPrice:
    """A scripted model's price, from its string; ``ScriptedModelError`` for a malformed one."""
    input_cost, output_cost = parse_model(model).per_token_prices()
    return ModelPrice(
        parse_price(input_cost, f"scripted input price of {model}"),
        parse_price(output_cost, f"scripted output price of {model}"),
        PriceSource.SCRIPTED,
    )
