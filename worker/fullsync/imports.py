"""A full sync through APSIS profile imports: the walk that writes import files instead of batches.

`choose` (registered in `worker.fullsync.walker.PATHS`) picks the path once per sync: a `full`
sync (not a reconciliation, not `--with-orders`) of a store with more customers than the shop's
`import_threshold` (0: never) goes through imports; the choice is kept on the record (`path`).

`ImportWalker` reads the store as the per-profile walk does (pages or bulk export lines,
`worker.fullsync.source`) and routes each page's customers (`mappings.import_rows.route_customer`,
against each customer's stored state): rows go to the open file of their section and kind,
customers whose consent or address changed go to an ordinary batch (the per-profile path),
refused rows become dead letters, stale / unchanged / skipped ones are counted. All of a page's
effects and the walk's checkpoint go to Redis in one transaction under the walk's lease: a crash
loses the page (read again) or keeps it whole, never a row twice or a row lost. Once the store is
read (`read_done`), the same job (one slice at a time, handing over like the walk) drives the
files through APSIS (`worker.fullsync.import_driver`); the walk is done, and the sync can finish,
once every file is verified and its customers' states saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import orjson
import structlog
from redis.exceptions import WatchError

from core import fullsync_control as control
from core.redis_conn import typed
from core.settings import env_float, env_int
from mappings.import_rows import Layout, Routed, layouts, route_customer
from mappings.installation import Shop
from mappings.snapshot import PayloadError
from mappings.state import SyncState
from worker.fullsync import walker as walk
from worker.fullsync.import_driver import Driver
from worker.fullsync.import_files import (
    FileKeys,
    ImportFile,
    full,
    header_bytes,
    load_files,
    new_file,
)
from worker.fullsync.import_letters import bury_in, refused_letter
from worker.fullsync.records import enqueue_job
from worker.realtime_lag import WALK_SLICE
from worker.runtime import TransientError
from worker.sync_consents import address_attributes
from worker.sync_update import Update

log = structlog.get_logger("worker.fullsync")

IMPORT_PATH = "import"
# Built files waiting for their upload: the walk waits above it (Redis holds at most these CSVs,
# ~3 MB each; the files' expected states, ~600 bytes a customer, stay until verified anyway). Large
# enough that APSIS's processing does not hold back the read of a million-customer export: a walk
# waiting here ends its slice, and the next slice downloads the export again from its first line
# (skipping what was read), which at 1,000,000 customers cost the store minutes of re-reads.
MAX_BUILT = env_int("SHOPSYNC_IMPORT_MAX_BUILT", 48, minimum=1)
# ...and by their bytes: a file may reach `FILE_BYTES` (16 MB), and a small Redis add-on holds
# 25-100 MB in all (docs/CONFIGURATION.md, docs/DEPLOYMENT.md).
BUFFER_BYTES = int(env_float("SHOPSYNC_IMPORT_BUFFER_MB", 64) * 1024 * 1024)
_WAITING = frozenset({"built", "requested"})  # built, not uploaded yet
STEP_EVERY_S = 1.0  # the driver's steps while the walk reads (besides one after each page)
_COUNTED = {"stale": "stale", "unchanged": "unchanged", "skipped": "skipped", "refused": "failed"}


def may_import(record: dict[str, Any], shop: Shop) -> bool:
    """The sync takes the import path, or may once its store is counted."""
    path = record.get("path")
    if path is not None:
        return bool(path == IMPORT_PATH)
    kind_fits = record.get("kind") == "full" and not record.get("with_orders")
    return kind_fits and shop.sync.import_threshold > 0


async def choose(base: walk._Walker) -> walk._Walker | None:
    record, shop, app = base.record, base.shop, base.app
    path = record.get("path")
    if path is None:
        path = "profile"
        if may_import(record, shop):
            total = record.get("total")
            if total is None:
                total = await app.shopify(shop).count_customers()
            if int(total) > shop.sync.import_threshold:
                path = IMPORT_PATH
            await typed(
                app.redis.hset(
                    base.keys.record,
                    mapping={"total": orjson.dumps(total).decode(), "path": orjson.dumps(path).decode()},
                )
            )
            record["total"] = total
        else:
            await typed(app.redis.hset(base.keys.record, "path", orjson.dumps(path).decode()))
        record["path"] = path
        log.info(
            "full_sync_path", sync_id=base.sync_id, shop=shop.domain, path=path, total=record.get("total")
        )
    if path != IMPORT_PATH:
        return None
    return ImportWalker(base.app, base.shop, base.sync_id, base.record, base.lease)


class ImportWalker(walk._Walker):
    async def run(self, deadline: float) -> bool:
        self.fkeys = FileKeys(self.app, self.sync_id)
        self.files: dict[int, ImportFile] = await load_files(self.app, self.fkeys)
        self.addresses = await address_attributes(self.app, self.shop)
        self.layouts = layouts(self.shop, self.addresses)
        self.driver = Driver(self)
        if not self.record.get("read_done") and not await self._read(deadline):
            return False
        return await self.driver.finish(deadline)

    async def _read(self, deadline: float) -> bool:
        """The walk, with the files driven meanwhile even while no page comes: a new slice first
        skips the export's lines read before (a minute and more at a million customers), and
        APSIS would run out of files. One lock keeps a page's transaction and a step apart (both
        change `files`); the stepper finishes its step before the walk goes on."""
        self.files_lock = asyncio.Lock()
        stop = asyncio.Event()

        async def keep_stepping() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STEP_EVERY_S)
                if not stop.is_set():
                    async with self.files_lock:
                        await self.driver.step()

        stepper = asyncio.create_task(keep_stepping(), name="import-driver-steps")
        try:
            return await super().run(deadline)
        finally:
            stop.set()
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # The slice is being stopped (its job cancelled, its process told to stop): so is
                # the step under way, which may be waiting seconds for an import request's turn.
                # Every step is safe to end at any await, as it is to kill.
                stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepper

    async def _room(self, deadline: float) -> bool:
        """The batches' backpressure, and the built files': while too many wait, upload some."""
        if not await super()._room(deadline):
            return False
        while _over_buffer(self.files.values()):
            async with self.files_lock:
                await self.driver.step()
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _route(self, customers: list[dict[str, Any]]) -> list[tuple[Routed, dict[str, Any]]]:
        kind = "bulk" if self.record.get("source") == "bulk" else "rest"
        snapshots = []
        out: list[tuple[Routed, dict[str, Any]]] = []
        lag = self.app.realtime_lag
        for n, customer in enumerate(customers, 1):
            if n % WALK_SLICE == 0 and lag.serving():
                await asyncio.sleep(0)  # webhook jobs of this process run between slices
            update = Update(kind=kind, payload=customer, received_at=0.0, source="fullsync")  # type: ignore[arg-type]
            try:
                snapshot = update.normalized()
            except PayloadError as exc:
                cid = _numeric(customer.get("id"))
                out.append((Routed("refused", cid, reason=f"payload: {exc}"), customer))
                continue
            assert not isinstance(snapshot, type(None))
            snapshots.append((snapshot, customer))
        keys = [self.app.keys.customer_state(self.shop.domain, s.id) for s, _ in snapshots]  # type: ignore[union-attr]
        raws = await typed(self.app.redis.mget(keys)) if keys else []
        for n, ((snapshot, customer), raw) in enumerate(zip(snapshots, raws, strict=True), 1):
            if n % WALK_SLICE == 0 and lag.serving():
                await asyncio.sleep(0)
            stored = None
            if raw is not None:
                data = orjson.loads(raw)
                if "deleted_at" in data:
                    out.append((Routed("stale", snapshot.id), customer))  # type: ignore[union-attr]
                    continue
                stored = SyncState.from_dict(data)
            routed = route_customer(self.shop, stored, snapshot, self.addresses, self.layouts)  # type: ignore[arg-type]
            out.append((routed, customer))
        return out

    async def _emit(self, customers: list[dict[str, Any]], checkpoint: dict[str, Any], done: bool) -> None:
        """One page: its rows appended to the open files, its per-profile customers as a batch,
        its refusals as dead letters, the counters and the walk's checkpoint, in one transaction."""
        began = time.monotonic()
        routed = await self._route(customers)
        async with self.files_lock:
            await self._emit_routed(routed, customers, checkpoint, done)
        # Beside webhooks, the walk takes only its share of the process (worker/realtime_lag.py).
        rested = await self.app.realtime_lag.give_way(time.monotonic() - began)
        if rested:
            self.app.metrics.inc("shopsync_fullsync_walk_rests_total")

    async def _emit_routed(
        self,
        routed: list[tuple[Routed, dict[str, Any]]],
        customers: list[dict[str, Any]],
        checkpoint: dict[str, Any],
        done: bool,
    ) -> None:
        files = {n: ImportFile(**vars(f)) for n, f in self.files.items()}  # applied after EXEC
        opened: dict[tuple[str, str], ImportFile] = {
            (f.section, f.kind): f for f in files.values() if f.state == "building"
        }
        appends: dict[int, list[bytes]] = {}
        expected: dict[int, dict[str, bytes]] = {}
        where: dict[str, dict[str, str]] = {}  # section -> customer id -> its files there
        per_profile: list[dict[str, Any]] = []
        counters: dict[str, int] = {}
        letters = []
        for result, customer in routed:
            if result.route == "import":
                assert result.state is not None
                state = result.state.to_dict()  # once, whatever the number of its rows
                for index, row in enumerate(result.rows):
                    layout = self.layouts[(row.section, row.kind)]
                    target = opened.get((row.section, row.kind))
                    if target is None:
                        target = new_file(files, layout)
                        opened[(row.section, row.kind)] = target
                        appends[target.number] = [header_bytes(layout)]
                        target.size = len(appends[target.number][0])
                    line = row.csv()
                    appends.setdefault(target.number, []).append(line)
                    target.rows += 1
                    target.size += len(line)
                    expected.setdefault(target.number, {})[row.profile_key] = orjson.dumps(
                        {"state": state, "count": index == 0}
                    )
                    held = where.setdefault(row.section, {})
                    held[row.profile_key] = ",".join(
                        filter(None, (held.get(row.profile_key), str(target.number)))
                    )
                counters["import_rows"] = counters.get("import_rows", 0) + 1
            elif result.route == "per_profile":
                per_profile.append(customer)
            else:
                counter = _COUNTED[result.route]
                counters[counter] = counters.get(counter, 0) + 1
                counters["seen"] = counters.get("seen", 0) + 1
                if result.route == "refused":
                    counters["import_rows_refused"] = counters.get("import_rows_refused", 0) + 1
                    letters.append(refused_letter(self.app, self.shop, self.sync_id, result))
        for target in list(opened.values()):
            earlier = sum(
                1
                for f in files.values()
                if (f.section, f.kind) == (target.section, target.kind) and f.number < target.number
            )
            if full(target, earlier) or done:
                target.state = "built"
        fields = {k: orjson.dumps(v) for k, v in checkpoint.items()}
        n = self.batch
        fields["batches"] = orjson.dumps(n + 1 if per_profile else n)
        if done:
            fields["read_done"] = b"true"
        while True:
            try:
                async with self.app.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.lease.key)
                    if await pipe.get(self.lease.key) != self.lease.token.encode():
                        raise TransientError("the walk's lease was lost; the walk continues in another job")
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for number, chunks in appends.items():
                        pipe.append(self.fkeys.content(number), b"".join(chunks))
                        pipe.expire(self.fkeys.content(number), control.DATA_TTL_S)
                    for number, rows in expected.items():
                        pipe.hset(self.fkeys.rows(number), mapping=rows)
                        pipe.expire(self.fkeys.rows(number), control.DATA_TTL_S)
                    for section, held in where.items():
                        pipe.hset(self.fkeys.where(section), mapping=held)
                        pipe.expire(self.fkeys.where(section), control.DATA_TTL_S)
                    changed = {
                        k: v.to_json()
                        for k, v in files.items()
                        if k not in self.files or vars(v) != vars(self.files[k])
                    }
                    if changed:
                        pipe.hset(self.fkeys.files, mapping={str(k): v for k, v in changed.items()})
                        pipe.expire(self.fkeys.files, control.DATA_TTL_S)
                    if per_profile:
                        job_id = control.batch_job_id(self.sync_id, n)
                        pipe.set(self.keys.page(n), orjson.dumps(per_profile), ex=control.DATA_TTL_S)
                        pipe.hset(self.keys.pending, str(n), job_id)
                        pipe.expire(self.keys.pending, control.DATA_TTL_S)
                        enqueue_job(pipe, self.app, job_id, control.BATCH_FUNCTION, (self.sync_id, n))
                        counters["import_rows_per_profile"] = len(per_profile)
                    for name, value in counters.items():
                        pipe.hincrby(self.keys.record, name, value)
                    pipe.hincrby(self.keys.record, "walked", len(customers))
                    for letter in letters:
                        bury_in(pipe, self.app.keys, letter)
                    pipe.hset(self.keys.record, mapping=fields)
                    await pipe.execute()
                break
            except WatchError:
                continue
        self.files = files
        if per_profile:
            self.batch += 1
        self.walked += len(customers)
        self.pages += 1
        self.record.update({k: orjson.loads(v) for k, v in fields.items()})
        await self.driver.step()


def _over_buffer(files: Iterable[ImportFile]) -> bool:
    """Too many built files wait for their upload, by count or by bytes (their CSVs in Redis)."""
    waiting = [f for f in files if f.state in _WAITING]
    return len(waiting) >= MAX_BUILT or sum(f.size for f in waiting) >= BUFFER_BYTES


def _numeric(value: Any) -> int:
    tail = str(value).rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def layout_of(walker: ImportWalker, file: ImportFile) -> Layout:
    return walker.layouts[(file.section, file.kind)]


walk.PATHS.append(choose)
