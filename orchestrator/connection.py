"""Connecting to Temporal: the address and namespace to use, and the client commands and workers share."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client


@dataclass(frozen=True)
class TemporalTarget:
    address: str
    namespace: str
    ui_url: str | None


async def connect(target: TemporalTarget) -> Client:
    return await Client.connect(target.address, namespace=target.namespace)
