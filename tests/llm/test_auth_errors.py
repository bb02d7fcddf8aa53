"""A missing or rejected provider key is final and names the variable to set, whatever shape litellm
gives it: the classifier over litellm's own exception classes, the check before the call, and
litellm's real OpenAI path against a local endpoint that answers 401."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import openai
import pytest
from litellm import exceptions as errors

from orchestrator.llm import credentials
from orchestrator.llm.complete import CompletionRequest, ModelCallError, classify, complete
from orchestrator.protocol.prompts import ChatMessage
from tests.chat_endpoint import ChatEndpoint
from tests.llm.unauthorized import point_openai_at, unauthorized_endpoint

MESSAGES = (ChatMessage("user", "Say hi."),)
OPENAI = "openai/rlm-auth-test"


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


@pytest.fixture
def endpoint() -> Iterator[ChatEndpoint]:
    with unauthorized_endpoint() as served:
        yield served


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No provider key of the families these tests name, whatever the machine has set."""
    for prefix in ("OPENAI", "ANTHROPIC", "GROQ", "GEMINI", "GOOGLE", "PERPLEXITY", "AZURE"):
        for name in [n for n in os.environ if n.startswith(prefix)]:
            monkeypatch.delenv(name)
    return monkeypatch


# --- the classifier over litellm's exception classes ----------------------------------------------

MISSING_OPENAI = (
    "OpenAIException - Missing credentials. Please pass an `api_key`, `workload_identity`, `admin_api_key`, "
    "or set the `OPENAI_API_KEY` or `OPENAI_ADMIN_KEY` environment variable."
)


@pytest.mark.parametrize(
    ("exc", "model", "variable"),
    [
        # The OpenAI SDK refusing to build a client, as litellm wraps it (every OpenAI-compatible provider).
        (errors.InternalServerError(MISSING_OPENAI, "openai", OPENAI), OPENAI, "OPENAI_API_KEY"),
        (errors.APIError(500, MISSING_OPENAI, "openai", OPENAI), OPENAI, "OPENAI_API_KEY"),
        (errors.APIConnectionError(MISSING_OPENAI, "openai", OPENAI), OPENAI, "OPENAI_API_KEY"),
        (
            errors.ServiceUnavailableError(MISSING_OPENAI, "openai", OPENAI, _response(503)),
            OPENAI,
            "OPENAI_API_KEY",
        ),
        # The same refusal unwrapped, in the SDK's older wording.
        (
            openai.OpenAIError(
                "The api_key client option must be set either by passing api_key to the client or by "
                "setting the OPENAI_API_KEY environment variable"
            ),
            OPENAI,
            "OPENAI_API_KEY",
        ),
        (
            errors.AuthenticationError("Missing Anthropic API Key", "anthropic", "m"),
            "anthropic/claude-3-5-sonnet-20240620",
            "ANTHROPIC_API_KEY",
        ),
    ],
)
def test_a_missing_key_is_final_and_names_the_variable(
    no_keys: pytest.MonkeyPatch, exc: BaseException, model: str, variable: str
) -> None:
    error = classify(exc, model)
    assert (error.kind, error.retryable, error.retry_after_s) == ("auth", False, None)
    assert error.message.startswith(f"{variable} is not set: export it")


def test_a_missing_key_of_other_providers_names_their_variables(no_keys: pytest.MonkeyPatch) -> None:
    gemini = errors.APIConnectionError(
        "Missing Gemini API key. Set the GEMINI_API_KEY or GOOGLE_API_KEY environment variable.\n"
        "Traceback (most recent call last):\n  ...",
        "gemini",
        "gemini/gemini-1.5-flash",
    )
    error = classify(gemini, "gemini/gemini-1.5-flash")
    assert (error.kind, error.retryable) == ("auth", False)
    assert error.message.startswith("GOOGLE_API_KEY or GEMINI_API_KEY is not set")
    fireworks = errors.APIConnectionError("Fireworks_aiException - FIREWORKS_API_KEY is not set", "f", "m")
    assert (classify(fireworks, "fireworks_ai/m").kind, classify(fireworks, "fireworks_ai/m").retryable) == (
        "auth",
        False,
    )
    azure = errors.APIError(
        500,
        "AzureException APIError - Missing credentials. Please pass one of `api_key`, `azure_ad_token`, "
        "or the `AZURE_OPENAI_API_KEY` or `AZURE_OPENAI_AD_TOKEN` environment variables.",
        "azure",
        "azure/gpt-4o",
    )
    error = classify(azure, "azure/gpt-4o")
    assert (error.kind, error.retryable) == ("auth", False)
    assert "AZURE_API_KEY" in error.message and "are not set: export them" in error.message


def test_a_rejected_key_is_final_and_names_the_variable_that_holds_it(no_keys: pytest.MonkeyPatch) -> None:
    no_keys.setenv("OPENAI_API_KEY", "sk-rejected")
    rejected = errors.AuthenticationError(
        "AuthenticationError: OpenAIException - Incorrect API key provided", "openai", OPENAI, _response(401)
    )
    error = classify(rejected, OPENAI)
    assert (error.kind, error.retryable, error.status_code) == ("auth", False, 401)
    assert error.message == (
        "the provider rejected the key in OPENAI_API_KEY (401: Incorrect API key provided): check it"
    )
    forbidden = errors.PermissionDeniedError(
        "OpenAIException - You are not allowed to use this model", "openai", OPENAI, _response(403)
    )
    error = classify(forbidden, OPENAI)
    assert (error.kind, error.retryable) == ("permission", False)
    assert error.message.startswith("the provider refused the key in OPENAI_API_KEY access (403: You are not")
    assert f"model {OPENAI!r}" in error.message


def test_bare_api_errors_with_auth_statuses_and_400s_about_the_key_are_auth_failures(
    no_keys: pytest.MonkeyPatch,
) -> None:
    no_keys.setenv("GEMINI_API_KEY", "bad")
    assert classify(errors.APIError(401, "unauthorized", "p", "m"), "openai/m").kind == "auth"
    assert classify(errors.APIError(403, "forbidden", "p", "m"), "openai/m").kind == "permission"
    # Gemini answers a bad key with 400 INVALID_ARGUMENT.
    bad_key = errors.BadRequestError("API key not valid. Please pass a valid API key.", "gemini/m", "gemini")
    error = classify(bad_key, "gemini/gemini-1.5-flash")
    assert (error.kind, error.retryable) == ("auth", False)
    assert "rejected the key in GEMINI_API_KEY" in error.message


def test_transient_failures_stay_retryable(no_keys: pytest.MonkeyPatch) -> None:
    for exc in (
        errors.InternalServerError("OpenAIException - Connection error.", "openai", OPENAI),
        errors.APIConnectionError("Cannot connect to host api.example.com:443", "openai", OPENAI),
        errors.APIError(502, "upstream went away", "openai", OPENAI),
    ):
        error = classify(exc, OPENAI)
        assert error.retryable and error.kind in ("server", "connection"), error


# --- the check before the call --------------------------------------------------------------------


def test_missing_key_names_the_providers_variable_only_when_nothing_of_it_is_set(
    no_keys: pytest.MonkeyPatch,
) -> None:
    assert credentials.missing_key("groq/llama3-8b-8192") == (
        "GROQ_API_KEY is not set: export it in the environment the worker runs in"
    )
    no_keys.setenv("GROQ_API_KEY", "gsk-x")
    assert credentials.missing_key("groq/llama3-8b-8192") is None
    # A spelling litellm reads but validate_environment does not know still counts as set.
    assert credentials.missing_key("perplexity/sonar") is not None
    no_keys.setenv("PERPLEXITY_API_KEY", "pplx-x")
    assert credentials.missing_key("perplexity/sonar") is None
    # Azure also takes AD tokens and managed identities; an unroutable model is not ours to judge.
    assert credentials.missing_key("azure/gpt-4o") is None
    assert credentials.missing_key("no-such-provider-model") is None


def test_a_self_hosted_openai_server_still_needs_the_variable(no_keys: pytest.MonkeyPatch) -> None:
    plain = credentials.missing_key(OPENAI) or ""
    assert plain.startswith("OPENAI_API_KEY is not set") and "self-hosted" not in plain
    no_keys.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    hosted = credentials.missing_key(OPENAI) or ""
    assert "self-hosted OpenAI-compatible server too: any value the server accepts" in hosted


# --- litellm's real OpenAI path ------------------------------------------------------------------


async def _failure(model: str) -> ModelCallError:
    with pytest.raises(ModelCallError) as caught:
        await complete(CompletionRequest(model=model, messages=MESSAGES, max_tokens=8, timeout_s=10))
    return caught.value


async def test_a_rejected_key_is_asked_once_and_named(
    monkeypatch: pytest.MonkeyPatch, endpoint: ChatEndpoint
) -> None:
    point_openai_at(monkeypatch, endpoint, "sk-rejected")
    error = await _failure(OPENAI)
    assert (error.kind, error.retryable, error.status_code) == ("auth", False, 401)
    assert "rejected the key in OPENAI_API_KEY (401: Incorrect API key provided" in error.message
    assert endpoint.paths == ["/v1/chat/completions"]


async def test_no_key_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, endpoint: ChatEndpoint
) -> None:
    point_openai_at(monkeypatch, endpoint, None)
    error = await _failure(OPENAI)
    assert (error.kind, error.retryable) == ("auth", False)
    assert error.message.startswith("OPENAI_API_KEY is not set")
    assert "any value the server accepts" in error.message
    assert endpoint.requests == 0


async def test_without_the_check_litellms_own_missing_key_error_is_final_too(
    monkeypatch: pytest.MonkeyPatch, endpoint: ChatEndpoint
) -> None:
    """The OpenAI SDK refuses a client without a key; litellm reports it as InternalServerError."""
    point_openai_at(monkeypatch, endpoint, None)
    monkeypatch.setattr(credentials, "missing_key", lambda *args, **kwargs: None)
    error = await _failure(OPENAI)
    assert isinstance(error.__cause__, errors.InternalServerError)
    assert (error.kind, error.retryable) == ("auth", False)
    assert error.message.startswith("OPENAI_API_KEY is not set")
    assert endpoint.requests == 0


async def test_a_provider_that_would_send_no_key_is_stopped_before_the_request(
    monkeypatch: pytest.MonkeyPatch, endpoint: ChatEndpoint
) -> None:
    """litellm's Groq path sends a request without a key; the check stops it first."""
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    monkeypatch.setenv("GROQ_API_BASE", endpoint.url)
    error = await _failure("groq/llama3-8b-8192")
    assert (error.kind, error.retryable) == ("auth", False)
    assert error.message.startswith("GROQ_API_KEY is not set")
    assert endpoint.requests == 0
