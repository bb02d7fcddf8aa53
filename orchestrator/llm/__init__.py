"""Model calls through litellm, and the scripted stand-in model registered as a litellm provider.

litellm reads two variables when it is first imported, so they are set here, before any module of
this package imports it (a value the user set wins):

- ``LITELLM_LOCAL_MODEL_COST_MAP=True``: importing never fetches a price map over the network;
- ``LITELLM_MODE=PRODUCTION``: importing does not load a ``.env`` file. litellm's default (``DEV``)
  loads the first ``.env`` found from the current directory or from litellm's install upwards, so a
  worker would pick up provider keys nobody gave it.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
