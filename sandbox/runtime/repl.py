"""The REPL server that runs inside the sandbox: executes cells, forwards sub-calls, snapshots state.

Started as ``python3 -I -c <bootstrap> <socket path>``; it connects to the host's unix socket and serves
frames (see ``wire``) until the host closes the channel or kills the process. Standard library only.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import resource
import socket
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from . import capture, context, snapshot, wire

HELPERS = frozenset(
    {
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "rlm_query_batched",
        "SHOW_VARS",
        "FINAL",
        "FINAL_VAR",
        "SubcallError",
    }
)
# Bound by the runtime rather than the code; never part of a snapshot or of the variable listing.
RESERVED = HELPERS | {"context", "answer"}
CELL_PREFIX = "<cell "
# Bound in a session turn's root only (``__rlm_session__``): elsewhere these stay ordinary names.
SESSION_NAMES = frozenset({"history", "notes", "remember"})
SESSION_SETUP = "__rlm_session__"


class SubcallError(RuntimeError):
    """A sub-call failed on the host; the message carries the host's reason."""


def _fresh_answer() -> dict[str, Any]:
    return {"content": "", "ready": False}


def _is_user_variable(name: str, value: Any, reserved: frozenset[str] = RESERVED) -> bool:
    return not name.startswith("__") and name not in reserved and not isinstance(value, types.ModuleType)


def _cell_traceback(exc: BaseException, limit: int) -> str:
    # Frames of the runtime itself (above the first cell frame) say nothing to the author of the code.
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        tb = tb.tb_next
    stream = capture.CappedStream(limit)
    stream.write("".join(traceback.format_exception(type(exc), exc, tb)))
    return stream.result()[0]


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _exit_when_orphaned(parent: int) -> None:
    # Without a container around it, a runtime whose host died would otherwise run a busy cell forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class Runtime:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.forked = False
        self.in_cell = False
        self.cell = 0
        self.seq = 0
        self.subcalls = 0
        self.output_chars = 20_000
        self.max_message_bytes = 64 << 20
        self.module = types.ModuleType("__main__")
        self.ns: dict[str, Any] = self.module.__dict__
        # User code sees a real __main__ module, so that pickling and `if __name__ == "__main__"` behave.
        sys.modules["__main__"] = self.module
        self.ns["answer"] = _fresh_answer()
        self.ns["context"] = None
        self.reserved = RESERVED
        self.session = False
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # A forked child must never write on the control channel: only the REPL process speaks for the cell.
        self.forked = True
        self.sock.close()

    # ---- helpers visible to the code -------------------------------------------------------------
    def _install_helpers(self) -> None:
        def llm_query(prompt: str, model: str | None = None) -> str:
            return self._subcall("llm", [prompt], model, "llm_query")[0]

        def llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]:
            return self._subcall("llm", list(prompts), model, "llm_query_batched")

        def rlm_query(prompt: str, model: str | None = None) -> str:
            return self._subcall("rlm", [prompt], model, "rlm_query")[0]

        def rlm_query_batched(prompts: list[str], model: str | None = None) -> list[str]:
            return self._subcall("rlm", list(prompts), model, "rlm_query_batched")

        def SHOW_VARS() -> dict[str, str]:
            return self.variables()

        def FINAL(value: Any) -> None:
            self._set_answer(value if isinstance(value, str) else str(value))

        def FINAL_VAR(name: str) -> None:
            if not isinstance(name, str):
                raise TypeError(
                    f"FINAL_VAR takes a variable's name as a string, got a {type(name).__name__}; "
                    "use FINAL(value) to answer with a value"
                )
            key = name.strip()
            if key not in self.ns or not _is_user_variable(key, self.ns[key], self.reserved):
                raise NameError(f"FINAL_VAR: there is no variable named {key!r}; see SHOW_VARS()")
            value = self.ns[key]
            self._set_answer(value if isinstance(value, str) else str(value))

        def remember(text: str) -> None:
            if not isinstance(text, str):
                raise TypeError(f"remember takes the note as a string, got a {type(text).__name__}")
            # A request of kind "note" (SubcallKind.NOTE; the runtime imports nothing of the host's package):
            # the host keeps the note and answers with one empty string.
            self._subcall("note", [text], None, "remember", counted=False)

        def session_setup(payload: str, fresh_answer: bool) -> None:
            # The host's first cell of a session turn's root: the turn's memory, never snapshotted.
            memory = json.loads(payload)
            self.session = True
            self.reserved = RESERVED | SESSION_NAMES
            self.ns["history"] = memory["history"]
            self.ns["notes"] = memory["notes"]
            self.ns["remember"] = remember
            if fresh_answer:  # restored from the previous turn: its final answer is not this turn's
                self.ns["answer"] = _fresh_answer()

        helpers: dict[str, Callable[..., Any] | type] = {
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
            "SHOW_VARS": SHOW_VARS,
            "FINAL": FINAL,
            "FINAL_VAR": FINAL_VAR,
            "SubcallError": SubcallError,
            SESSION_SETUP: session_setup,
        }
        if self.session:
            helpers["remember"] = remember
        self.ns.update(helpers)

    def _set_answer(self, content: str) -> None:
        if not isinstance(self.ns.get("answer"), dict):
            self.ns["answer"] = _fresh_answer()
        self.ns["answer"]["content"] = content
        self.ns["answer"]["ready"] = True

    def _subcall(
        self, kind: str, prompts: list[Any], model: str | None, function: str, *, counted: bool = True
    ) -> list[str]:
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"{function}: prompt {index} is a {type(prompt).__name__}, expected str")
        if model is not None and not isinstance(model, str):
            raise TypeError(f"{function}: model must be a string or None, got {type(model).__name__}")
        if not prompts:
            return []
        if self.forked:
            raise SubcallError(f"{function} works only in the REPL's own process, not in a forked child")
        # UTF-8 takes at most 4 bytes a character; only a batch that might be too large is measured exactly.
        size = sum(len(p) for p in prompts)
        if 4 * size > self.max_message_bytes:
            size = sum(len(json.dumps(p, ensure_ascii=False).encode()) for p in prompts)
            if size > self.max_message_bytes:
                raise ValueError(
                    f"{function}: the prompts take {size} bytes, more than the {self.max_message_bytes} a "
                    "sub-call request may carry; split them into smaller batches"
                )
        with self.lock:
            if not self.in_cell:
                raise SubcallError(f"{function} was called after its cell had finished")
            self.seq += 1
            if counted:
                self.subcalls += len(prompts)
            request = {
                "op": "subcall",
                "kind": kind,
                "prompts": prompts,
                "model": model,
                "seq": self.seq,
                "batched": function.endswith("_batched"),
            }
            wire.send(self.sock, request)
            reply, _, _ = wire.recv(self.sock)
        if reply.get("op") == "subcall_result":
            answers = reply["answers"]
            return [str(answer) for answer in answers]
        raise SubcallError(str(reply.get("reason", "the host gave no reason")))

    # ---- state -----------------------------------------------------------------------------------
    def variables(self) -> dict[str, str]:
        return {
            name: type(value).__name__
            for name, value in sorted(self.ns.items())
            if _is_user_variable(name, value, self.reserved)
        }

    def _answer(self) -> dict[str, Any] | None:
        raw = self.ns.get("answer")
        if not isinstance(raw, dict):
            return None
        content = raw.get("content", "")
        ready = bool(raw.get("ready", False))
        text = content if isinstance(content, str) else str(content)
        if not text and not ready:
            return None
        return {"content": text, "ready": ready}

    def _snapshot(self) -> tuple[bytes, dict[str, str]]:
        user = {
            name: value for name, value in self.ns.items() if _is_user_variable(name, value, self.reserved)
        }
        modules = {
            name: value.__name__
            for name, value in self.ns.items()
            if isinstance(value, types.ModuleType) and not name.startswith("__")
        }
        answer = self._answer() or _fresh_answer()
        try:
            return snapshot.dump(user, answer, modules, self.ns)
        except Exception as exc:
            # Each variable pickled alone, yet not together: keep none rather than crash the runtime.
            reason = f"the snapshot as a whole failed: {type(exc).__name__}: {str(exc)[:200]}"
            return snapshot.dump({}, answer, modules, self.ns)[0], dict.fromkeys(user, reason)

    # ---- operations ------------------------------------------------------------------------------
    def op_init(self, message: dict[str, Any]) -> None:
        for name, value in message.get("rlimits", {}).items():
            limit = getattr(resource, name)
            resource.setrlimit(limit, (value, value))
        self.output_chars = int(message["output_chars"])
        self.max_message_bytes = int(message["max_message_bytes"])
        if message.get("exit_with_parent"):
            threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
        stream = message.get("context_stream")
        if stream is not None:
            parts = [self._context_part() for _ in range(int(stream["parts"]))]
            self.ns["context"] = context.decode_streamed(stream["kind"], stream.get("name"), parts)
        else:
            self.ns["context"] = context.load_context(message.get("context"))
        self._install_helpers()
        wire.send(self.sock, {"op": "ready", "context": context.describe(self.ns["context"])})

    def _context_part(self) -> bytearray:
        message, blob, _ = wire.recv_frame(self.sock)
        if message.get("op") != "context_part":
            raise ValueError(f"expected a context part, got {message.get('op')!r}")
        return blob

    def op_exec(self, message: dict[str, Any]) -> None:
        code = message["code"]
        self.cell += 1
        self.seq = 0
        self.subcalls = 0
        self._install_helpers()
        out = capture.CappedStream(self.output_chars)
        err = capture.CappedStream(self.output_chars)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        status, trace = "ok", None
        started = time.perf_counter()
        self.in_cell = True
        try:
            self._run(code, f"{CELL_PREFIX}{self.cell}>")
        except BaseException as exc:
            if self.forked:
                os._exit(1)
            status, trace = "error", _cell_traceback(exc, self.output_chars)
        finally:
            if self.forked:
                os._exit(0)
            with self.lock:
                self.in_cell = False
            sys.stdout, sys.stderr = saved
        duration = time.perf_counter() - started
        _reap_children()
        blob, left_out = self._snapshot()
        stdout, stdout_cut = out.result()
        stderr, stderr_cut = err.result()
        result = {
            "op": "result",
            "status": status,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_cut": stdout_cut,
            "stderr_cut": stderr_cut,
            "traceback": trace,
            "answer": self._answer(),
            "variables": self.variables(),
            "unpicklable": sorted(left_out),
            "unpicklable_reasons": left_out,
            "subcalls": self.subcalls,
            "compute_s": duration,
        }
        wire.send(self.sock, result, blob)

    def _run(self, code: str, filename: str) -> None:
        # Registered so that tracebacks show the offending source lines.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        last: ast.expr | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1].value
            del tree.body[-1]
        exec(compile(tree, filename, "exec"), self.ns)  # noqa: S102 - executing the code is the point
        if last is not None:
            # Like the interactive interpreter: a trailing expression's value is printed.
            value = eval(compile(ast.Expression(last), filename, "eval"), self.ns)  # noqa: S307
            if value is not None:
                print(repr(value))

    def op_restore(self, blob: bytes) -> None:
        try:
            variables, answer, modules = snapshot.load(blob)
        except Exception as exc:
            wire.send(self.sock, {"op": "error", "message": f"snapshot could not be loaded: {exc}"})
            return
        for name in [
            name for name, value in self.ns.items() if _is_user_variable(name, value, self.reserved)
        ]:
            del self.ns[name]
        for name in [n for n, v in self.ns.items() if isinstance(v, types.ModuleType) and n[:2] != "__"]:
            del self.ns[name]
        self.ns.update(modules)
        self.ns.update(variables)
        self.ns["answer"] = answer
        wire.send(self.sock, {"op": "restored", "variables": self.variables()})

    def serve(self) -> None:
        while True:
            try:
                message, blob, _ = wire.recv(self.sock)
            except wire.ChannelClosed:
                return
            op = message.get("op")
            if op == "init":
                try:
                    self.op_init(message)
                except Exception as exc:
                    wire.send(self.sock, {"op": "error", "message": f"{type(exc).__name__}: {exc}"})
            elif op == "exec":
                self.op_exec(message)
            elif op == "restore":
                self.op_restore(blob)
            else:
                wire.send(self.sock, {"op": "error", "message": f"unknown operation {op!r}"})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: repl <control socket path>", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(argv[1])
    Runtime(sock).serve()
    return 0
