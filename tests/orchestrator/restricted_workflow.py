"""A workflow module the Temporal sandbox must refuse: it reads the wall clock at import time."""

import datetime

from temporalio import workflow

LOADED_AT = datetime.datetime.now()


@workflow.defn(name="RestrictedAtImport")
class RestrictedAtImport:
    @workflow.run
    async def run(self) -> None:
        return None
