"""The smoke run of an uploaded model, out of process: load it in onnxruntime and predict two rows of zeros.

A model's graph decides what onnxruntime allocates: a ConstantOfShape or Expand to a huge shape, a Loop with a
huge trip count, an initializer the optimiser copies. Run in the web process, one upload could take all its
memory or a thread for ever. So the run happens in a child process with an address-space limit (RLIMIT_AS)
and a CPU limit, killed at a wall-clock timeout, in an empty working directory, with none of our environment.

Starting a Python that imports onnxruntime costs ~300 ms, against ~2 ms for the whole smoke run of a small
model, so one helper process per web (or worker) process is started on first use and kept: it imports
onnxruntime once, then forks a fresh child for every model. The helper is single-threaded and creates no
session itself, so forking it is safe; uploads in one process take turns through a lock.

This file is also the helper's program (`python -I smoke.py`): below the client, it imports only the standard
library, numpy and onnxruntime.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

# request: payload bytes, memory the run may add (bytes), wall-clock timeout (s); response: body bytes
_REQUEST = struct.Struct("<QQd")
_RESPONSE = struct.Struct("<Q")
# Time for the helper to start (imports) and to fork and report, beyond the run's own timeout.
_GRACE_SECONDS = 30.0
# Raw engine messages are for our log only; this many characters is plenty to diagnose.
_MAX_ERROR_CHARS = 2000


class SmokeUnavailable(RuntimeError):
    """The helper process could not be started or talked to: a fault on our side, not the model's."""


class _HelperSilent(Exception):
    """The helper gave no answer within the run's timeout and grace: retrying would only wait as long again."""


class SmokeServer:
    """The client side: one helper process, started lazily, restarted if it dies."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def forget_after_fork(self) -> None:
        """In a forked child (a Celery pool process): the helper is the parent's, so let go of it unharmed."""
        process, self._process = self._process, None
        self._lock = threading.Lock()
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            process.returncode = 0  # not ours to wait for or kill

    def run(self, data: bytes, *, memory_bytes: int, timeout_seconds: float) -> dict:
        """Smoke-run ONNX bytes; returns the helper's report (see `_smoke` for its keys)."""
        with self._lock:
            for attempt in (1, 2):
                process = self._ensure_started()
                try:
                    return self._ask(process, data, memory_bytes, timeout_seconds)
                except _HelperSilent:
                    self._stop()
                    raise SmokeUnavailable("the smoke-run helper did not answer in time") from None
                except (OSError, EOFError, ValueError) as exc:
                    # The helper died or garbled its answer: start a fresh one and try once more.
                    self._stop()
                    if attempt == 2:
                        raise SmokeUnavailable(f"the smoke-run helper failed: {exc}") from None
                except BaseException:
                    # Interrupted mid-exchange (a task's soft time limit, a signal): the pipe's state is unknown.
                    self._stop()
                    raise
        raise AssertionError("unreachable")

    def _ensure_started(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # One thread each: the child's limits then bound all its work, and forking the helper stays safe.
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        }
        self._process = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
            # Its own session: a Ctrl-C meant for us does not kill it mid-answer; it exits when our pipe closes.
            start_new_session=True,
        )
        return self._process

    def _ask(self, process: subprocess.Popen, data: bytes, memory_bytes: int, timeout_seconds: float) -> dict:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(_REQUEST.pack(len(data), memory_bytes, timeout_seconds))
        process.stdin.write(data)
        deadline = time.monotonic() + timeout_seconds + _GRACE_SECONDS
        fd = process.stdout.fileno()
        (size,) = _RESPONSE.unpack(_read_exact_until(fd, _RESPONSE.size, deadline))
        if size > 2 * len(data) + (1 << 20):  # the report holds names from the model and short texts, no more
            raise ValueError(f"an answer of {size} bytes")
        return json.loads(_read_exact_until(fd, size, deadline))

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        try:
            process.wait(timeout=2)  # a closed stdin ends it, and it removes its working directory
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


def _read_exact_until(fd: int, size: int, deadline: float) -> bytes:
    chunks, left = [], size
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _HelperSilent
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the smoke-run helper closed its pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


SMOKE = SmokeServer()
atexit.register(SMOKE.close)
os.register_at_fork(after_in_child=SMOKE.forget_after_fork)


# ---------------------------------------------------------------- the helper process


def _serve() -> None:
    """Answer requests on stdin until it closes (also when our parent dies): one forked child per model."""
    # An empty working directory, of the helper's own: should anything resolve a relative path, it finds nothing.
    workdir = tempfile.mkdtemp(prefix="watchkeeper-smoke-")
    os.chdir(workdir)
    try:
        _answer_requests()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _answer_requests() -> None:
    import numpy  # noqa: F401  loaded once here, so each child starts with it
    import onnxruntime

    # Its log lines would carry the engine's raw text; the report carries it to our log instead.
    onnxruntime.set_default_logger_severity(4)
    stdin, stdout = sys.stdin.buffer.raw, sys.stdout.buffer.raw
    while True:
        header = _read_exact(stdin, _REQUEST.size)
        if header is None:
            return
        size, memory_bytes, timeout_seconds = _REQUEST.unpack(header)
        payload = _read_exact(stdin, size)
        if payload is None:
            return
        body = json.dumps(_run_in_child(payload, memory_bytes, timeout_seconds)).encode()
        _write_all(stdout.fileno(), _RESPONSE.pack(len(body)) + body)


def _run_in_child(payload: bytes, memory_bytes: int, timeout_seconds: float) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limit ourselves, run, report, and leave without any cleanup
        os.close(read_end)
        try:
            # Nothing the engine prints may reach the helper's answer pipe.
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            _limit(memory_bytes, timeout_seconds)
            report = _smoke(payload)
        except MemoryError:
            report = {"outcome": "memory"}
        except BaseException as exc:  # noqa: BLE001  anything at all is a failed run, reported as such
            report = {"outcome": "crashed", "error": f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]}
        try:
            _write_all(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + timeout_seconds
    chunks, timed_out = [], False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([read_end], [], [], remaining)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"outcome": "timeout"}
    if os.WIFSIGNALED(status):
        killer = os.WTERMSIG(status)
        if killer == signal.SIGXCPU:  # RLIMIT_CPU: the same as running out of time
            return {"outcome": "timeout"}
        return {"outcome": "crashed", "error": f"killed by {signal.Signals(killer).name}"}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"outcome": "crashed", "error": "no report"}


def _limit(memory_bytes: int, timeout_seconds: float) -> None:
    import resource

    # The limit is what the run may add to the address space the helper already has (interpreter, numpy,
    # onnxruntime, the model's bytes), so it means the same whatever those take on this machine.
    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no /proc, and RLIMIT_AS is not enforced there anyway; the timeout still is
        current = None
    if current is not None:
        resource.setrlimit(resource.RLIMIT_AS, (current + memory_bytes, current + memory_bytes))
    cpu = int(timeout_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _smoke(payload: bytes) -> dict:
    """Load the model and, when it has the one float [batch, n] input we serve, predict two rows of zeros.

    Keys: outcome ("loaded", "load_failed"), kind and error (the engine's exception class and raw text),
    inputs and outputs ([{name, type, shape}]), run ("ok", "failed", "memory", "skipped") and run_kind/run_error.
    """
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  every engine error is a model it cannot load
        return {"outcome": "load_failed", "kind": type(exc).__name__, "error": str(exc)[:_MAX_ERROR_CHARS]}
    report: dict = {
        "outcome": "loaded",
        "inputs": [{"name": i.name, "type": i.type, "shape": list(i.shape)} for i in session.get_inputs()],
        "outputs": [{"name": o.name, "type": o.type, "shape": list(o.shape or [])} for o in session.get_outputs()],
        "run": "skipped",
    }
    inputs = report["inputs"]
    shape = inputs[0]["shape"] if len(inputs) == 1 else []
    if inputs and inputs[0]["type"] == "tensor(float)" and len(shape) == 2 and isinstance(shape[1], int):
        try:
            session.run(None, {inputs[0]["name"]: np.zeros((2, shape[1]), dtype=np.float32)})
            report["run"] = "ok"
        except MemoryError:
            report["run"] = "memory"
        except Exception as exc:  # noqa: BLE001  every engine error is a failed test run
            report.update(run="failed", run_kind=type(exc).__name__, run_error=str(exc)[:_MAX_ERROR_CHARS])
    return report


def _read_exact(stream, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    _serve()
