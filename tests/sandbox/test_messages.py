"""The host's reading of the runtime's sub-call requests: kinds are the sandbox's one enumeration."""

from __future__ import annotations

import pytest

from sandbox import SubcallKind, SubcallRequest
from sandbox.messages import Malformed, decode


@pytest.mark.parametrize("kind", list(SubcallKind))
def test_every_kind_the_runtime_sends_becomes_its_enum_member(kind: SubcallKind) -> None:
    request = decode({"op": "subcall", "kind": str(kind), "prompts": ["p"], "model": None, "seq": 1})
    assert isinstance(request, SubcallRequest)
    assert request.kind is kind


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(Malformed, match="kind must be one of llm, rlm, note"):
        decode({"op": "subcall", "kind": "shell", "prompts": ["p"], "seq": 1})
