"""Model calls through litellm, and the scripted stand-in model registered as a litellm provider.

litellm reads ``LITELLM_LOCAL_MODEL_COST_MAP`` when it is first imported: set here, before any module
of this package imports it, so importing never fetches a price map over the network.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
