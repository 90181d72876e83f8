"""An import full sync's files in Redis, and the APSIS account's shared pending-import slots.

Per sync (`Keys.full_sync_import(id)` = I):
- `I:files` hash file number -> `ImportFile` JSON: its layout (section and kind), rows, bytes,
  state, tries and the ticket of its current import;
- `I:file:{n}` the CSV (header first), appended a page at a time in the walk's transaction;
- `I:rows:{n}` hash customer id -> the customer's expected state JSON once the file is imported;
- `I:where:{section}` hash customer id -> the numbers of the files holding its rows in that
  section (comma-separated: an opt-in and an opt-out file), written with the rows, so the
  verification finds a reported profile's expected state in O(1) whatever the number of files;
  dropped once the section is verified.
A file is `building` until its rows or bytes reach the bounds (`FILE_ROWS`, `FILE_BYTES`, far
under APSIS's 50 MB; a layout's first files smaller, see `full`), then `built`; `requested` once an import was created for it (the ticket
kept), `uploaded` once its upload was answered, `completed` / `failed` from the import's status,
`verified` once its outcome was checked and its customers' states saved; `dead` after its last
try. Only the walk's lease holder writes any of it.

Slots (`Keys.apsis_import_slots(client_id)`): a sorted set of the account's pending imports,
member `{sync}:{file}`, score the time its lease expires (renewed while the file is polled), at
most `MAX_PENDING` live members: the account's limit, shared by every shop and process using it;
a holder that died frees its slot when its lease lapses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from core.fullsync_control import SyncKeys
from core.redis_conn import typed
from core.settings import env_int
from mappings.import_rows import ImportKind, Layout, csv_line
from mappings.installation import Shop
from worker.context import WorkerContext

FILE_ROWS = env_int("SHOPSYNC_IMPORT_FILE_ROWS", 25000, minimum=1)
FIRST_FILE_ROWS = env_int("SHOPSYNC_IMPORT_FIRST_FILE_ROWS", 12500, minimum=1)
FILE_BYTES = env_int("SHOPSYNC_IMPORT_FILE_BYTES", 16 * 1024 * 1024)
MAX_PENDING = 3  # APSIS: three simultaneous imports per account
SLOT_LEASE_S = 600.0  # renewed on every poll; a dead holder's slot is free after it
DATA_TTL_S = 7 * 24 * 3600
CHUNK = 1 << 20

# KEYS: slots. ARGV: member, now, expiry, max. 1 when the member holds a slot.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


@dataclass
class ImportFile:
    number: int
    section: str
    kind: ImportKind
    state: str = "building"
    rows: int = 0
    size: int = 0  # bytes
    tries: int = 0
    import_id: str | None = None
    ticket: dict[str, Any] | None = None  # ImportTicket fields while `requested`
    polled_at: float = 0.0
    error: str | None = None
    resent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ImportFile:
        return cls(**orjson.loads(raw))


class ImportSync(Protocol):
    """What the driver and the verifier need of the import walk (worker/fullsync/imports.py)."""

    app: WorkerContext
    shop: Shop
    sync_id: str
    keys: SyncKeys
    record: dict[str, Any]
    fkeys: FileKeys
    files: dict[int, ImportFile]
    layouts: dict[tuple[str, ImportKind], Layout]


class FileKeys:
    def __init__(self, app: WorkerContext, sync_id: str) -> None:
        base = app.keys.full_sync_import(sync_id)
        self.files = f"{base}:files"
        self._base = base

    def content(self, n: int) -> str:
        return f"{self._base}:file:{n}"

    def rows(self, n: int) -> str:
        return f"{self._base}:rows:{n}"

    def where(self, section: str) -> str:
        return f"{self._base}:where:{section}"


async def load_files(app: WorkerContext, keys: FileKeys) -> dict[int, ImportFile]:
    raw = await typed(app.redis.hgetall(keys.files))
    return {int(k): ImportFile.from_json(v) for k, v in raw.items()}


def new_file(files: dict[int, ImportFile], layout: Layout) -> ImportFile:
    number = max(files, default=-1) + 1
    created = ImportFile(number, layout.section, layout.kind)
    files[number] = created
    return created


def header_bytes(layout: Layout) -> bytes:
    return csv_line(layout.header())


def full(file: ImportFile, earlier: int = 0) -> bool:
    """Whether the file is done; `earlier`: files of its layout before it in this sync.

    A layout's first file is smaller (`FIRST_FILE_ROWS`, doubling up to `FILE_ROWS`), so APSIS
    starts processing sooner; not smaller still: import requests are 10 a minute, so a file must
    keep APSIS busy for 6 s (12,000 rows at 2,000 rows/s) or APSIS waits for the next request."""
    bound = min(FILE_ROWS, FIRST_FILE_ROWS << min(earlier, 16))
    return file.rows >= bound or file.size >= FILE_BYTES


async def stream(app: WorkerContext, keys: FileKeys, n: int) -> AsyncIterator[bytes]:
    """The file's bytes from Redis, a chunk at a time (never the whole file in memory twice)."""
    offset = 0
    while True:
        chunk = await app.redis.getrange(keys.content(n), offset, offset + CHUNK - 1)
        if not chunk:
            return
        yield bytes(chunk)
        offset += len(chunk)


async def acquire_slot(app: WorkerContext, client_id: str, member: str) -> bool:
    now = time.time()
    got = await app.script(_ACQUIRE)(
        keys=[app.keys.apsis_import_slots(client_id)], args=[member, now, now + SLOT_LEASE_S, MAX_PENDING]
    )
    return bool(int(got))


async def release_slot(app: WorkerContext, client_id: str, member: str) -> None:
    await typed(app.redis.zrem(app.keys.apsis_import_slots(client_id), member))
