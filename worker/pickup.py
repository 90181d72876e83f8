"""arq's `Worker` with a cheaper job pickup: one script claims what a poll can start.

A job stays in its queue's sorted set until it finishes, so every poll (every 20 ms on the
real-time queue) reads the jobs running now as well as the new ones. arq 0.28's `start_jobs`
then claims each id it read with four round trips (WATCH, EXISTS of the in-progress mark,
ZSCORE, then MULTI/PSETEX/EXEC, or UNWATCH when the job runs already): the process's own running
jobs, and with several worker processes each other's, were claimed again at every poll. With a
backlog (the real-time benchmark at 100 webhooks/s, bound by APSIS) that was 13 of each per
webhook, more Redis traffic than the job's own; without one, the four round trips of each new
job were still a third of a webhook's (docs/PERFORMANCE-LOG.md).

Here the ids this process runs are dropped without asking Redis, and the rest go to one script
(`_CLAIM`) that does what arq's WATCH/MULTI did, atomically: for each id in order, skip it if
another process marked it in progress or it left the queue (finished) or is not due yet
(re-enqueued with a delay), else set its in-progress mark; it stops once the process's free job
slots are claimed. So two processes still never both start a job, and a poll costs one round
trip for all the jobs it starts. The claimed jobs then start exactly as arq starts them (a job
slot, the task, arq's `run_job` with the job's score).
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript

# Ids sent to the claim script at a time: enough to step over another process's running jobs
# ahead of the new ones in a round trip or two, few enough to pack cheaply at every poll.
MIN_CHUNK = 64

# KEYS[1] the queue, then each id's in-progress mark; ARGV now (ms), the mark's ttl (ms), the
# free slots, then the ids. Returns {id, score, id, score, ...} of the jobs claimed.
_CLAIM = """
local now, ttl, room = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 2, #KEYS do
  if #out >= room * 2 then break end
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local id = ARGV[i + 2]
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', KEYS[i], ttl, '1')
      out[#out + 1] = id
      out[#out + 1] = score
    end
  end
end
return out
"""


class PickupWorker(Worker):
    _claim_script: AsyncScript | None = None  # registered on first use (its sha computed once)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id, score in await self.claim(job_ids):
            await self.sem.acquire()  # free: no more are claimed than slots are free
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def claim(self, job_ids: list[bytes]) -> list[tuple[str, int]]:
        """Claim (set the in-progress mark of) the jobs of `job_ids` this process may start now:
        not running here or elsewhere, still queued and due; no more than its free job slots."""
        room = self.max_jobs - self.job_counter
        fresh = [job_id.decode() for job_id in job_ids]
        fresh = [job_id for job_id in fresh if not self._running_here(job_id)]
        claimed: list[tuple[str, int]] = []
        size = max(room, MIN_CHUNK)
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(_CLAIM)
        script = self._claim_script
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        for start in range(0, len(fresh), size):
            if len(claimed) >= room:
                break
            chunk = fresh[start : start + size]
            reply = await script(
                keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in chunk)],
                args=[timestamp_ms(), ttl_ms, room - len(claimed), *chunk],
            )
            claimed += [
                (job_id.decode(), int(float(score)))
                for job_id, score in zip(reply[::2], reply[1::2], strict=True)
            ]
        return claimed

    def _running_here(self, job_id: str) -> bool:
        # A finished task stays in `tasks` until the end of the poll; its job may already be
        # back in the queue (a Retry without delay), so only an unfinished task counts.
        task = self.tasks.get(job_id)
        return task is not None and not task.done()
