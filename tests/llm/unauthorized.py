"""A local OpenAI-compatible endpoint that refuses every key: answers each POST .../chat/completions
with 401 and an OpenAI-style error body, and counts the requests it saw."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.chat_endpoint import ChatEndpoint, chat_endpoint

OPENAI_BASE_VARIABLES = ("OPENAI_API_BASE", "OPENAI_BASE_URL")
BODY = {
    "error": {
        "message": "Incorrect API key provided: sk-rej***ted.",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


@contextmanager
def unauthorized_endpoint() -> Iterator[ChatEndpoint]:
    with chat_endpoint(lambda _body: (401, BODY)) as endpoint:
        yield endpoint


def point_openai_at(monkeypatch: pytest.MonkeyPatch, endpoint: ChatEndpoint, key: str | None) -> None:
    """litellm's OpenAI provider reads its base URL and key from the environment at each call."""
    for name in OPENAI_BASE_VARIABLES:
        monkeypatch.setenv(name, endpoint.url)
    for name in [n for n in os.environ if n.startswith("OPENAI_") and n.endswith(("_KEY", "_TOKEN"))]:
        monkeypatch.delenv(name)
    if key is not None:
        monkeypatch.setenv("OPENAI_API_KEY", key)
