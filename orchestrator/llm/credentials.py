"""Provider credentials: a key that is not set, found before the call, and auth failures told in terms
of the environment variable to fix.

litellm reports a missing key in many shapes: ``AuthenticationError`` for some providers, but also
``InternalServerError("Missing credentials ...")`` (the OpenAI SDK refusing to build a client, for
every OpenAI-compatible provider), ``APIConnectionError("Missing Gemini API key ...")`` or
``APIError`` (Azure). Retrying any of them cannot help, so the classifier recognises them by their
text as well as by class. For providers whose client does not insist on a key (Groq, Mistral, ...)
litellm would send a request without one; ``missing_key`` catches that before the call.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

import litellm

# Only these of validate_environment's names are keys: the others (AWS_*, VERTEXAI_*, *_API_BASE, ...)
# have ambient alternatives (instance roles, ADC, defaults), so their absence proves nothing.
_KEY_SUFFIXES = ("_API_KEY", "_API_TOKEN", "_AUTH_TOKEN")
# Azure also authenticates with AD tokens and managed identities, which validate_environment ignores.
_NO_UPFRONT_CHECK = frozenset({"azure"})
# Prefixes of a provider's key variables, where the provider's own name is not one.
_PREFIXES = {"gemini": ("GEMINI", "GOOGLE"), "bedrock": ("AWS",), "sagemaker": ("AWS",)}
_OPENAI_BASES = ("OPENAI_API_BASE", "OPENAI_BASE_URL")

_MISSING = re.compile(
    r"missing credentials|missing [\w ]{0,30}api[ _-]?key|api_key client option must be set"
    r"|unable to locate credentials|no api[ _-]?key"
    r"|api[ _-]?key (?:is )?(?:not set|not found|not provided|required|missing)",
    re.IGNORECASE,
)
_MISSING_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:KEY|TOKEN) is not set")
_REJECTED = re.compile(
    r"(?:invalid|incorrect|not valid|expired|revoked)[\w ]{0,20}api[ _-]?key"
    r"|api[ _-]?key[\w ]{0,20}(?:invalid|not valid|expired|revoked)",
    re.IGNORECASE,
)
_NAMED_KEY = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_API_KEY\b")
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+: )?(?:\w+Error: )?(?:\w+Exception(?: APIError)? - )?")


def says_missing(text: str) -> bool:
    """Whether a failure's text says no key (or no credentials) was set."""
    return bool(_MISSING.search(text) or _MISSING_VARIABLE.search(text))


def says_rejected(text: str) -> bool:
    """Whether a failure's text says the key was refused (providers that answer 400 for a bad key)."""
    return bool(_REJECTED.search(text))


def provider_of(model: str) -> str | None:
    try:
        return str(litellm.get_llm_provider(model=model)[1])
    except Exception:  # litellm raises BadRequestError for a model it cannot route: not ours to judge
        return None


def missing_key(model: str, *, api_key: str | None = None, api_base: str | None = None) -> str | None:
    """The message for a call that cannot authenticate because its provider's key is not set, else None.

    Checked per call (litellm's ``validate_environment`` is a few dictionary lookups), so nothing is
    decided at the worker's start for models it may never call. Errs towards letting the call go: a
    failure it misses still reaches ``describe`` through the classifier."""
    provider = provider_of(model)
    if provider is None or provider in _NO_UPFRONT_CHECK:
        return None
    found = litellm.validate_environment(model=model, api_key=api_key, api_base=api_base)
    names = [str(n) for n in found.get("missing_keys", ()) if str(n).endswith(_KEY_SUFFIXES)]
    if not names or _set_key_variables(provider):
        # A variable of the provider's own family is set: litellm reads spellings that
        # validate_environment does not know (PERPLEXITY_API_KEY, TOGETHER_API_KEY, ...).
        return None
    return missing_message(names, provider, api_base)


def missing_message(names: Iterable[str], provider: str | None, api_base: str | None) -> str:
    names = list(names)
    if not names:
        return (
            f"no API key is set for provider {provider or 'unknown'!r}: export the provider's key "
            "variable in the environment the worker runs in"
        )
    if len(names) == 1 or all(n.endswith(_KEY_SUFFIXES) for n in names):
        # Several key names from litellm are alternatives (GOOGLE_API_KEY or GEMINI_API_KEY).
        message = f"{' or '.join(names)} is not set: export it in the environment the worker runs in"
    else:
        message = f"{' and '.join(names)} are not set: export them in the environment the worker runs in"
    if provider == "openai" and (api_base or any(os.environ.get(v) for v in _OPENAI_BASES)):
        message += (
            " (the OpenAI client needs a key for a self-hosted OpenAI-compatible server too: "
            "any value the server accepts)"
        )
    return message


def describe(
    kind: str,
    text: str,
    model: str,
    status_code: int | None,
    *,
    api_key: str | None = None,
    api_base: str | None = None,
) -> str:
    """One line for an ``auth`` / ``permission`` failure that names the variable to set or check."""
    provider = provider_of(model)
    if says_missing(text):
        names = [n for n in _missing_names(model, api_key, api_base) if n not in os.environ]
        return missing_message(names or _names_in(text), provider, api_base)
    detail = provider_detail(text)
    code = f"{status_code}: " if status_code else ""
    if api_key is not None:
        key = "the key passed as api_key"
    else:
        names = _set_key_variables(provider) if provider else []
        key = f"the key in {' or '.join(names)}" if names else "the key"
    if kind == "permission":
        return f"the provider refused {key} access ({code}{detail}): check that it may use model {model!r}"
    return f"the provider rejected {key} ({code}{detail}): check it"


def provider_detail(text: str) -> str:
    """The provider's own words: litellm's class prefixes removed, a JSON error body reduced to its
    message."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    rest = _LITELLM_PREFIX.sub("", first, count=1)
    try:
        body = json.loads(rest)
    except ValueError:
        return rest
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else rest


def _missing_names(model: str, api_key: str | None, api_base: str | None) -> list[str]:
    found = litellm.validate_environment(model=model, api_key=api_key, api_base=api_base)
    return [str(n) for n in found.get("missing_keys", ())]


def _names_in(text: str) -> list[str]:
    return list(dict.fromkeys(_NAMED_KEY.findall(text)))


def _set_key_variables(provider: str) -> list[str]:
    """The provider's key variables that are set, ``*_API_KEY`` first (``OPENAI_API_KEY``,
    ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_AUTH_TOKEN``, ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``, ...)."""
    prefixes = _PREFIXES.get(provider, (provider.split("_")[0].upper(),))
    found = [
        name
        for name in os.environ
        if name.startswith(prefixes) and name.endswith(("_KEY", "_TOKEN")) and name.isupper()
    ]
    return sorted(found, key=lambda n: (not n.endswith("_API_KEY"), n))
