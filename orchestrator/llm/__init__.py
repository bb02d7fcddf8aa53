"""Model calls through litellm, and the scripted stand-in model registered as a litellm provider.

litellm reads two variables when it is first imported: ``litellm_import_settings`` sets them (a value
already set wins), here before any module of this package imports litellm, and again by whoever
imports litellm from outside it:

- ``LITELLM_LOCAL_MODEL_COST_MAP=True``: importing never fetches a price map over the network;
- ``LITELLM_MODE=PRODUCTION``: importing does not load a ``.env`` file. litellm's default (``DEV``)
  loads the first ``.env`` found from the current directory or from litellm's install upwards, so a
  worker would pick up provider keys nobody gave it.
"""

import os


def litellm_import_settings() -> None:
    # Called again right before a later import: a warm CLI's command runs with its caller's environment.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")


litellm_import_settings()

# The scripted stand-in model's provider prefix. Here, not in ``scripted`` (which imports litellm), so
# that a command can tell a scripted model from another without importing litellm.
SCRIPTED_PROVIDER = "scripted"


def is_scripted(model: str) -> bool:
    return model.startswith(f"{SCRIPTED_PROVIDER}/")
