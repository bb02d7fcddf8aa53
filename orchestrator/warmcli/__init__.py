"""The warm CLI: `rlm dev` keeps a process with the client's modules loaded, and short-lived ``rlm``
commands of its data directory run in processes forked from it (``client`` hands a command over,
``server`` forks and runs it). Importing this package costs nothing: ``rlm`` reads it first."""

# Short-lived client commands; the servers (`dev`, `worker`, `model serve`) and the rest run in the
# process they were started in.
HANDED = frozenset(
    {"run", "submit", "wait", "watch", "ask", "status", "runs", "tree", "show", "export", "report",
     "pause", "resume", "abort", "stuck"}
)  # fmt: skip
# RLM_WARM_CLI=0: `rlm dev` starts no warm process, and a command never hands itself over.
DISABLE = "RLM_WARM_CLI"
