"""The scripted model over HTTP (orchestrator.llm.openai_server) through real clients: litellm's OpenAI
provider and durable-rlm's ``complete()``, the OpenAI SDK the reference implementation uses, and the
programs it writes for the reference's conversations run as the reference's local REPL runs them."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import litellm
import openai
import pytest

from orchestrator.llm import openai_server
from orchestrator.llm.complete import CompletionRequest, ModelCallError, complete
from orchestrator.llm.openai_server import ScriptedServer, ServerConfig
from orchestrator.llm.reference_dialect import SYSTEM_MARK
from orchestrator.llm.scripted_model import POLICIES, estimate_prompt_tokens
from orchestrator.protocol.prompts import ContextInfo, NodeLimits, conversation, leaf_messages

COUNT_PROMPT = "Count the matches of the regex /a/ in the text after this line.\nbanana bandana"


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(ServerConfig(policy="leaf")) as served:
        yield served


def call(server: ScriptedServer, model: str, messages: list[dict[str, str]]) -> Any:
    return litellm.completion(
        model=f"openai/{model}",
        messages=messages,
        api_base=server.url,
        api_key="any",
        num_retries=0,
        timeout=20,
    )


def test_litellm_gets_the_policys_reply_with_usage(server: ScriptedServer) -> None:
    reply = call(server, "leaf", [{"role": "user", "content": COUNT_PROMPT}])

    assert reply.choices[0].message.content == "6"
    expected = estimate_prompt_tokens("scripted/leaf", leaf_messages(COUNT_PROMPT))
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (expected, 1)
    assert reply.usage.total_tokens == expected + 1


def test_the_model_name_picks_the_policy_for_durable_rlm_conversations(server: ScriptedServer) -> None:
    messages = conversation(
        NodeLimits(), "How many times does 'a' occur? Use 3 chunks.", ContextInfo.of_text(9), ()
    )
    raw = [{"role": m.role, "content": m.content} for m in messages]

    mapped = call(server, "mapreduce", raw).choices[0].message.content
    searched = call(server, "search", raw).choices[0].message.content
    # an unknown name takes the server's default policy (leaf: counts directly, no sub-calls)
    default = call(server, "gpt-4o", raw).choices[0].message.content

    assert "```repl" in mapped and "llm_query_batched(_prompts)" in mapped and "_split(text, 3)" in mapped
    assert "re.search(pattern, text)" in searched and "llm_query" not in searched
    assert "llm_query" not in default and "re.finditer" in default


def test_concurrent_calls_are_served_concurrently(server: ScriptedServer) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda _: call(server, "leaf?latency_ms=1000", [{"role": "user", "content": COUNT_PROMPT}]),
                range(8),
            )
        )
    elapsed = time.monotonic() - started

    assert [r.choices[0].message.content for r in replies] == ["6"] * 8
    assert 1.0 <= elapsed < 5.0  # one after another would take 8 s


@pytest.mark.parametrize(
    ("model", "kind", "retryable"),
    [
        ("fail_ratelimit?retry_after=7", "rate_limit", True),
        ("fail_auth", "auth", False),
        ("fail_server", "server", True),
        # litellm reports the OpenAI SDK's dropped connection as InternalServerError("Connection error.")
        ("fail_connection", "server", True),
        ("fail_timeout", "timeout", True),
        ("fail_notfound", "not_found", False),
        ("fail_context", "context_window", False),
        ("fail_badrequest", "bad_request", False),
        ("search?no_such_parameter=1", "bad_request", False),
    ],
)
async def test_failures_reach_complete_as_a_provider_would_send_them(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, model: str, kind: str, retryable: bool
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "any")
    req = CompletionRequest(
        model=f"openai/{model}", messages=leaf_messages(COUNT_PROMPT), api_base=server.url
    )

    with pytest.raises(ModelCallError) as caught:
        await complete(req)

    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)
    if kind == "rate_limit":
        assert caught.value.retry_after_s == 7


async def test_calls_whose_timeouts_follow_a_deadline_share_one_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A call's timeout is the time left before its run's deadline, different for every call near the
    # end of a run: litellm built a client (a connection, an HTTP session never closed) per timeout.
    monkeypatch.setenv("OPENAI_API_KEY", "any")
    with ScriptedServer(ServerConfig(policy="leaf")) as own:
        for left_s in (119.5, 104.2, 87.31, 61.07):
            req = CompletionRequest(
                model="openai/leaf", messages=leaf_messages(COUNT_PROMPT), api_base=own.url, timeout_s=left_s
            )
            assert (await complete(req)).text == "6"
        assert (own.requests, own.connections) == (4, 1)


async def test_a_reply_slower_than_the_calls_timeout_is_a_retryable_timeout_at_that_timeout(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "any")
    req = CompletionRequest(
        model="openai/leaf?latency_ms=5000",
        messages=leaf_messages(COUNT_PROMPT),
        api_base=server.url,
        timeout_s=0.4,
    )

    with pytest.raises(ModelCallError) as caught:
        await complete(req)

    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)
    assert caught.value.message == "no reply within 0.4 s"


def test_a_name_without_a_policy_is_not_found_without_a_default() -> None:
    with (
        ScriptedServer() as bare,
        pytest.raises(litellm.exceptions.NotFoundError, match="names no scripted policy"),
    ):
        call(bare, "gpt-4o", [{"role": "user", "content": COUNT_PROMPT}])


# ---------------------------------------------------------------- the reference implementation's side


def reference_messages(query: str, context: str, turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation as rlms 0.1.3 (rlm/utils/prompts.py, rlm/core/rlm.py) builds it."""
    return [
        {"role": "system", "content": SYSTEM_MARK + ": a language model with a prompt ... ```repl``` blocks"},
        {
            "role": "user",
            "content": f"Answer the following: {query}\n\nYour context is a str of {len(context)} total "
            "characters. Each sub-LLM call can handle roughly ~100k tokens at once.",
        },
        {"role": "user", "content": "You have not interacted with the REPL environment ...\n\nTurn 1/30:"},
        *turns,
    ]


def run_like_the_reference(server: ScriptedServer, model: str, query: str, context: str) -> str | None:
    """One turn as the reference's local REPL runs it: the model through the OpenAI SDK, each ```repl
    block exec'd in one namespace, ``answer["ready"] = True`` ending the run."""
    client = openai.OpenAI(base_url=server.url, api_key="any")

    def ask(prompt: str) -> str:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        return reply.choices[0].message.content or ""

    messages = reference_messages(query, context, [])
    reply = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    answer = {"content": "", "ready": False}
    namespace: dict[str, Any] = {
        "context": context,
        "answer": answer,
        "llm_query": ask,
        "llm_query_batched": lambda prompts: [ask(p) for p in prompts],
    }
    blocks = re.findall(r"```repl\s*\n(.*?)\n```", text, re.S)
    assert blocks, text
    for code in blocks:
        exec(code, namespace, namespace)
    return str(answer["content"]) if answer["ready"] else None


def test_reference_conversations_get_programs_its_repl_runs(server: ScriptedServer) -> None:
    records = "\n".join(f"record {i}; label={'urgent' if i % 3 == 0 else 'spam'};" for i in range(300))
    haystack = "filler words here\n" * 2000 + "The magic number is 4817305.\n" + "more filler\n" * 500

    count = run_like_the_reference(
        server, "mapreduce", "How many records match /label=urgent;/? Use 5 chunks.", records
    )
    needle = run_like_the_reference(server, "search", "What is the magic number?", haystack)

    assert (count, needle) == ("100", "4817305")


def test_reference_failures_and_the_final_request_are_read(server: ScriptedServer) -> None:
    failed = {"role": "user", "content": "REPL output:\n\nNameError: name 'llm_query_batched' is not defined"}
    turns: list[dict[str, str]] = []
    for _ in range(3):
        turns += [{"role": "assistant", "content": "```repl\nx\n```"}, failed]
    gave_up = call(server, "mapreduce", reference_messages("How many /a/? Use 2 chunks.", "a", turns))
    final = call(
        server,
        "mapreduce",
        reference_messages(
            "How many /a/?", "a", [{"role": "assistant", "content": "Please provide a final answer"}]
        ),
    )

    assert 'answer["ready"] = True' in gave_up.choices[0].message.content  # FINAL through the answer dict
    assert "3 attempts failed" in gave_up.choices[0].message.content
    assert "```" not in final.choices[0].message.content  # plain text: no more code runs


def test_content_parts_are_read_as_text(server: ScriptedServer) -> None:
    parts = [{"type": "text", "text": "Count the matches of the regex /n/ in the text after this line.\n"}]
    parts.append({"type": "text", "text": "banana"})
    reply = litellm.completion(
        model="openai/leaf", messages=[{"role": "user", "content": parts}], api_base=server.url, api_key="any"
    )

    assert reply.choices[0].message.content == "2"


# ---------------------------------------------------------------- rlm model serve

# The installed command line (orchestrator.cli registers model_cmds).
RLM = str(Path(sys.executable).parent / "rlm")


def test_rlm_model_serve_prints_its_url_serves_and_stops_on_sigterm() -> None:
    cmd = [RLM, "model", "serve", "--port", "0", "--policy", "leaf"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        reply = litellm.completion(
            model="openai/any-name",
            messages=[{"role": "user", "content": COUNT_PROMPT}],
            api_base=url,
            api_key="x",
        )
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()

    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert reply.choices[0].message.content == "6"
    assert code == 0


def test_rlm_model_serve_refuses_an_unknown_policy_in_one_line() -> None:
    cmd = [RLM, "model", "serve", "--policy", "smart"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: --policy 'smart' is not a policy; use one of {', '.join(POLICIES)}"
    ]


def test_replies_go_out_without_waiting_for_the_clients_delayed_ack(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Headers and body are two writes; with Nagle's algorithm on, the body waited 40 ms per reply for
    # the client's delayed ACK. Every connection the server serves must have it off.
    seen: list[int] = []
    setup = openai_server._Handler.setup

    def recording(handler: openai_server._Handler) -> None:
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(openai_server._Handler, "setup", recording)
    with ScriptedServer(ServerConfig(policy="leaf")) as own:
        for _ in range(2):
            call(own, "leaf", [{"role": "user", "content": COUNT_PROMPT}])
    assert seen and all(seen), seen
