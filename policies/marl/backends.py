"""Where the copies run: in this process (:class:`_LocalBackend`) or one daemon process per copy
(:class:`_SubprocBackend`). Both expose ``send`` / ``recv`` / ``layout`` / ``close`` per copy."""
from __future__ import annotations

import multiprocessing as mp
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper

from .layout import _Layout
from .runner import _CopyRunner, _execute


class _RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the cause of the re-raised exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper,
            copy_index: int, dead_agents: str, agent_id: bool | str, env_state: bool) -> None:
    """Subprocess loop: one copy, commands ``(cmd, data)`` in, ``(ok, payload)`` out."""
    import cloudpickle

    parent_remote.close()
    runner: _CopyRunner | None = None
    try:
        runner = _CopyRunner(env_fn_wrapper.var(), copy_index, dead_agents, agent_id, env_state)
        remote.send((True, None))
    except Exception as exc:  # report construction errors to the parent
        remote.send((False, _picklable(exc, cloudpickle), traceback.format_exc()))
        remote.close()
        return
    while True:
        try:
            cmd, data = remote.recv()
        except (EOFError, KeyboardInterrupt, OSError):
            break
        if cmd == "close":
            try:
                runner.close()
            finally:
                remote.send((True, None))
                remote.close()
            break
        try:
            result = _execute(runner, cmd, data)
            remote.send((True, result))
        except (BrokenPipeError, EOFError):
            break
        except Exception as exc:
            remote.send((False, _picklable(exc, cloudpickle), traceback.format_exc()))


def _picklable(exc: BaseException, cloudpickle: Any) -> BaseException:
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(repr(exc))


def _shutdown_workers(remotes: Sequence[Any], processes: Sequence[Any]) -> None:
    """Stops the workers (used by ``close()`` and, if it was forgotten, at GC / exit)."""
    for remote in remotes:
        try:
            remote.send(("close", None))
        except (OSError, BrokenPipeError, EOFError, ValueError):
            pass
    for remote in remotes:
        try:
            if remote.poll(5.0):
                remote.recv()
        except (OSError, EOFError, ValueError):
            pass
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=1.0)
    for remote in remotes:
        try:
            remote.close()
        except OSError:
            pass


class _LocalBackend:
    """Copies in this process; commands run when their result is received."""

    def __init__(self, env_fn: Callable[[], Any], n_copies: int, dead_agents: str,
                 agent_id: bool | str, env_state: bool) -> None:
        self.runners: list[_CopyRunner] = []
        try:
            for i in range(n_copies):
                env = env_fn()
                if any(env is runner.env for runner in self.runners):
                    raise ValueError("env_fn returned the same ParallelEnv instance twice; it must "
                                     "create a new environment at every call")
                self.runners.append(_CopyRunner(env, i, dead_agents, agent_id, env_state))
        except BaseException:
            self.close()
            raise
        self._pending: list[tuple[str, Any] | None] = [None] * n_copies
        self._stepped: dict[int, Any] = {}
        env_types = {type(runner.env) for runner in self.runners}
        self._step_batch = (getattr(env_types.pop(), "step_batch", None)
                            if len(env_types) == 1 else None)

    def send(self, copy: int, cmd: str, data: Any) -> None:
        self._pending[copy] = (cmd, data)

    def recv(self, copy: int) -> Any:
        if copy in self._stepped:
            return self._stepped.pop(copy)
        pending = self._pending[copy]
        if pending is None:
            raise RuntimeError(f"no command pending for copy {copy}")
        if pending[0] == "step" and self._step_batch is not None:
            self._step_together()
            return self._stepped.pop(copy)
        self._pending[copy] = None
        return _execute(self.runners[copy], *pending)

    def _step_together(self) -> None:
        """Every copy with a pending step, stepped by one call of the env class's
        ``step_batch(envs, action_dicts)`` (e.g. SMAX's vmapped step): what stepping them one
        by one gives (for SMAX up to float rounding), in one call instead of ``n_copies``."""
        copies = [c for c, p in enumerate(self._pending) if p is not None and p[0] == "step"]
        runners = [self.runners[c] for c in copies]
        actions = [runner.begin_step(self._pending[c][1]) for c, runner in zip(copies, runners)]
        for c in copies:
            self._pending[c] = None
        results = self._step_batch([runner.env for runner in runners], actions)
        for c, runner, result in zip(copies, runners, results):
            self._stepped[c] = runner.end_step(result)

    def layout(self, copy: int) -> _Layout:
        return self.runners[copy].layout

    def close(self) -> None:
        for runner in self.runners:
            runner.close()


class _SubprocBackend:
    """One daemon process per copy, talking over a ``Pipe``."""

    def __init__(self, env_fn: Callable[[], Any], n_copies: int, dead_agents: str,
                 agent_id: bool | str, env_state: bool, start_method: str | None) -> None:
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available here; choose one of "
                             f"{mp.get_all_start_methods()}")
        ctx = mp.get_context(start_method)
        pipes = [ctx.Pipe() for _ in range(n_copies)]
        self.remotes = [p[0] for p in pipes]
        self.processes = []
        wrapped = CloudpickleWrapper(env_fn)
        for i, (remote, work_remote) in enumerate(pipes):
            process = ctx.Process(target=_worker,
                                  args=(work_remote, remote, wrapped, i, dead_agents, agent_id,
                                        env_state),
                                  daemon=True)
            process.start()
            self.processes.append(process)
            work_remote.close()
        self._finalizer = weakref.finalize(self, _shutdown_workers, self.remotes, self.processes)
        try:
            for i in range(n_copies):
                self._result(i)
            for i in range(n_copies):
                self.send(i, "layout", None)
            self._layouts: list[_Layout] = [self.recv(i) for i in range(n_copies)]
        except BaseException:
            self.close()
            raise

    def _result(self, copy: int) -> Any:
        try:
            msg = self.remotes[copy].recv()
        except EOFError as exc:
            raise RuntimeError(f"the worker process of copy {copy} died (exit code "
                               f"{self.processes[copy].exitcode})") from exc
        if msg[0]:
            return msg[1]
        _, exc, tb = msg
        raise exc from _RemoteTraceback(f"in the worker of copy {copy}:\n{tb}")

    def send(self, copy: int, cmd: str, data: Any) -> None:
        self.remotes[copy].send((cmd, data))

    def recv(self, copy: int) -> Any:
        return self._result(copy)

    def layout(self, copy: int) -> _Layout:
        return self._layouts[copy]

    def close(self) -> None:
        self._finalizer()
