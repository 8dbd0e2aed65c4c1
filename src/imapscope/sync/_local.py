"""Which workers on this machine are gone, so that their leases need not run out first.

Each worker holds an exclusive ``flock`` on a file named after it in a directory all the
machine's workers share (in the data directory, where the key is). The kernel drops the lock
when the process ends, however it ends (``kill -9`` included); a file whose lock can be taken is
a worker that is gone, and its accounts can be taken over at once instead of after the lease
time. A worker elsewhere (another machine, another data directory) is not seen here: its
leases run out as before. Taking over early is safe whatever this says: a claim raises the
lease's epoch, and the writes of a worker that is not gone after all are refused (fencing).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO


class LocalWorkers:
    def __init__(self, directory: Path, worker_id: str) -> None:
        self.directory = directory
        self.worker_id = worker_id
        self._held: IO[str] | None = None

    def _path(self, worker_id: str) -> Path:
        return self.directory / f"{worker_id}.lock"  # host:pid:token (a host name has no "/")

    def claim(self) -> None:
        """Mark this worker alive (until the process ends)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = self._path(self.worker_id).open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._held = handle

    def gone(self) -> list[str]:
        """The workers whose file is here but whose lock is free: they have ended. Their files
        are removed."""
        found = []
        for path in sorted(self.directory.glob("*.lock")):
            worker_id = path.name.removesuffix(".lock")
            if worker_id == self.worker_id:
                continue
            try:
                with path.open("r+") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink()  # still locked by us: nobody can take it meanwhile
            except BlockingIOError:
                continue  # alive
            except OSError:
                continue  # removed by another worker meanwhile
            found.append(worker_id)
        return found

    def release(self) -> None:
        if self._held is not None:
            with contextlib.suppress(OSError):
                self._path(self.worker_id).unlink()
            self._held.close()
            self._held = None
