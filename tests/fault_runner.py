"""A fork server for the fault-injection harness: imports the heavy libraries once, then runs each requested
`polyalign run` in a forked child (a real process, which a fault point can SIGKILL) and reports its exit status.

Protocol: one JSON object per stdin line, {"args": [...], "env": {...}, "log": path}; one JSON line back,
{"rc": exit status, or -signal when killed}. Started by tests/test_pipeline_faults.py.
"""

from __future__ import annotations

import json
import os
import sys


def preload() -> None:
    """Import what every stage imports, so that a forked run starts in milliseconds (no compute here: a parent
    that ran torch ops could hand its children a locked thread pool)."""
    import torch

    torch.set_num_threads(1)
    import polyalign.cli  # noqa: F401
    import polyalign.critic.fit  # noqa: F401
    import polyalign.eval.compare  # noqa: F401
    import polyalign.eval.runner  # noqa: F401
    import polyalign.generate  # noqa: F401
    import polyalign.models.pretrain  # noqa: F401
    import polyalign.pairs  # noqa: F401
    import polyalign.train.hdpo  # noqa: F401
    import polyalign.train.sft  # noqa: F401


def child(job: dict) -> None:
    """In the forked child: redirect output to the job's log, set its env, run the CLI, exit with its status."""
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(job.get("env", {}))
    sys.argv = ["polyalign", *job["args"]]
    code = 0
    try:
        from polyalign.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(job)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"rc": rc}), flush=True)


if __name__ == "__main__":
    serve()
