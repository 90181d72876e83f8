"""arq's `Worker` with a cheaper job pickup: jobs already running are not claimed again.

A job stays in its queue's sorted set until it finishes, so every poll (every 20 ms on the
real-time queue) reads the jobs running now as well as the new ones. arq 0.28's `start_jobs`
then tries to claim each id it read with four round trips (WATCH, EXISTS of the in-progress mark,
ZSCORE, UNWATCH) and gives up on those already running: the process's own jobs, and with several
worker processes, each other's. With a backlog (the real-time benchmark at 100 webhooks/s, bound
by APSIS) that was 13 of each per webhook, more Redis traffic than the job's own.

Here the ids this process runs are dropped without asking Redis, and when more than one id is
left, one pipeline of EXISTS (as many ids as the process has free job slots, 16 at least) tells
which are running elsewhere. arq's own claim (the WATCH/MULTI on the in-progress mark) still
decides for the rest, so two processes can never both start a job; a mark set between the EXISTS
and the claim is caught there as before.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix
from arq.worker import Worker

MIN_CHUNK = 16


class PickupWorker(Worker):
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        await super().start_jobs(await self.claimable(job_ids))

    async def claimable(self, job_ids: list[bytes]) -> list[bytes]:
        """The ids worth trying to claim: not running in this process and, when more than one is
        left, not marked in progress by another; no more than the free job slots need."""
        fresh = [job_id for job_id in job_ids if not self._running_here(job_id.decode())]
        room = self.max_jobs - self.job_counter
        if len(fresh) < 2 or room < 1:
            return fresh[: max(room, 0)]
        out: list[bytes] = []
        # A backlog reads up to `queue_read_limit` ids a poll; ask about as many as there are
        # free slots at a time (at least `MIN_CHUNK`: a nearly full process with another's
        # running jobs ahead of the new ones would otherwise ask one id a round trip), and stop
        # once enough are free to claim.
        size = max(room, MIN_CHUNK)
        for start in range(0, len(fresh), size):
            chunk = fresh[start : start + size]
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.exists(in_progress_key_prefix + job_id.decode())
                marked = await pipe.execute()
            out += [job_id for job_id, running in zip(chunk, marked, strict=True) if not running]
            if len(out) >= room:
                break
        return out

    def _running_here(self, job_id: str) -> bool:
        # A finished task stays in `tasks` until the end of the poll; its job may already be
        # back in the queue (a Retry without delay), so only an unfinished task counts.
        task = self.tasks.get(job_id)
        return task is not None and not task.done()
