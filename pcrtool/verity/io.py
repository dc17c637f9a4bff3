"""File adapter for dm-verity: stream data files far larger than memory through the pure tree maths.

Level 0 (more than 99 % of the work) is hashed by a thread pool over slices of one read-only mmap:
hashlib releases the GIL for buffers of 2 KiB and more, so the threads really run in parallel.
Level-0 hash blocks are written as they come; the levels above live in memory (each is
``digests_per_block`` times smaller than the one below).

A separate new hash file is written atomically (``pcrtool.fileio``). A hash area inside an
existing file (``--hash-offset`` in the data file, or an existing hash device) is updated in
place, like veritysetup does: parameters are checked before the first byte is written and the
data region is never touched.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pcrtool.errors import InputFileError, UsageError
from pcrtool.fileio import atomic_writer
from pcrtool.verity.params import SUPERBLOCK_SIZE, TreeLayout, VerityParams, compute_layout
from pcrtool.verity.superblock import build_superblock, is_superblock, parse_superblock
from pcrtool.verity.tree import build_upper_levels, digest_entries, entry_digest, hash_data_chunk

Progress = Callable[[int, int], None]   # (bytes done, bytes total)

CHUNK_BYTES = 4 << 20


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def file_size(path: str | os.PathLike, *, what: str = "data file") -> int:
    """Size of a regular file or block device (pipes and sockets are refused: they cannot be mapped)."""
    import stat
    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode)):
            raise InputFileError(f"{what} {str(path)!r} is not a regular file or block device",
                                 hint="write the image to a file first")
        with open(path, "rb") as f:
            return f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(path)!r} does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {str(path)!r} is a directory", hint="give a file") from None
    except PermissionError:
        raise InputFileError(f"cannot read {what} {str(path)!r}: permission denied") from None


def data_blocks_for(size: int, block_size: int, *, path: str, explicit: int | None) -> int:
    """Number of data blocks: refuse a partial tail unless the count is given explicitly."""
    if explicit is not None:
        if explicit < 1:
            raise UsageError("--data-blocks must be at least 1")
        if explicit * block_size > size:
            raise UsageError(f"--data-blocks {explicit} × {block_size} bytes exceeds the "
                             f"{size} bytes of {path!r}")
        return explicit
    if size < block_size:
        raise UsageError(f"{path!r} ({size} bytes) is smaller than one {block_size}-byte data block")
    if size % block_size:
        tail = size % block_size
        raise UsageError(
            f"{path!r} is {size} bytes, not a multiple of the {block_size}-byte data block size",
            hint=f"veritysetup would silently leave the last {tail} bytes unprotected; pad the "
                 f"image, or pass --data-blocks {size // block_size} to accept that explicitly")
    return size // block_size


def _check_data_size(data_path: str, params: VerityParams) -> None:
    size = file_size(data_path)
    if params.data_size > size:
        raise UsageError(f"data file {data_path!r} has {size} bytes, fewer than "
                         f"{params.data_blocks} blocks of {params.data_block_size}")


@contextlib.contextmanager
def _mapped(path: str | os.PathLike, length: int):
    try:
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise InputFileError(f"cannot map data file {str(path)!r}: {getattr(e, 'strerror', None) or e}",
                             hint="give a regular file or a block device") from None
    try:
        with contextlib.suppress(AttributeError, OSError):
            m.madvise(mmap.MADV_SEQUENTIAL)
        yield m
    finally:
        m.close()


def _chunks(params: VerityParams):
    """(first data block, block count) of the level-0 work items: whole hash blocks each."""
    per = params.digests_per_block
    blocks = max(per, (CHUNK_BYTES // params.data_block_size) // per * per)
    for first in range(0, params.data_blocks, blocks):
        yield first, min(blocks, params.data_blocks - first)


# Level-0 workers: "thread" (one mmap shared by a thread pool), "process" (a fork-context
# ProcessPoolExecutor whose workers map the file themselves) or "fork" (format only: the data is
# split into one contiguous share per worker; this process hashes the first share, forked
# children the others, each writing its level-0 hash blocks straight into the hash file with
# pwrite and its level-1 entries into a shared anonymous mapping: no pool, no pickling, no idle
# parent). hashlib releases the GIL per 4 KiB update, but the GIL hand-over between threads after
# every block costs about as much as the hashing, so processes scale better; "auto" uses "fork"
# for format and the pool for verify, for large inputs only.
BACKEND = os.environ.get("PCRTOOL_VERITY_BACKEND", "auto")
PROCESS_MIN_BYTES = 64 << 20

_worker_map = None


def _process_init(path: str, length: int) -> None:
    global _worker_map
    with open(path, "rb") as f:
        _worker_map = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ)


def _process_task(params: VerityParams, first: int, count: int) -> tuple[bytes, bytes]:
    dbs = params.data_block_size
    with memoryview(_worker_map) as mv:
        return hash_data_chunk(params, mv[first * dbs:(first + count) * dbs])


def _executor(params: VerityParams, mm, workers: int, path: str | None):
    """(executor, submit(first, count) -> future)."""
    use_processes = BACKEND in ("process", "fork") or (BACKEND == "auto" and params.data_size >= PROCESS_MIN_BYTES)
    if use_processes and path is not None and workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_process_init, initargs=(path, params.data_size))
        return pool, lambda first, count: pool.submit(_process_task, params, first, count)
    from concurrent.futures import ThreadPoolExecutor  # lazily: `format` of large images needs no pool

    mv = memoryview(mm)
    dbs = params.data_block_size
    pool = ThreadPoolExecutor(max_workers=workers)
    return pool, lambda first, count: pool.submit(hash_data_chunk, params,
                                                  mv[first * dbs:(first + count) * dbs])


def _hash_level0(params: VerityParams, mm, workers: int, progress: Progress | None, consume,
                 path: str | None = None) -> None:
    """Hash all data blocks in parallel; ``consume(first_block, level0, level1_entries)`` in order."""
    dbs = params.data_block_size
    total = params.data_size
    pool, submit = _executor(params, mm, workers, path)
    with pool:
        pending: deque = deque()
        done = 0

        def drain_one():
            nonlocal done
            first, count, fut = pending.popleft()
            level0, entries = fut.result()
            consume(first, level0, entries)
            done += count * dbs
            if progress:
                progress(done, total)

        for first, count in _chunks(params):
            pending.append((first, count, submit(first, count)))
            if len(pending) >= 2 * workers:
                drain_one()
        while pending:
            drain_one()


def _hash_level0_forked(params: VerityParams, mm, workers: int, progress: Progress | None, fd: int,
                        level0_base: int) -> bytes:
    """Level 0 by this process and ``workers - 1`` forked children, one contiguous share each.

    Every share starts on a hash-block boundary (a multiple of ``digests_per_block`` data
    blocks), so shares write disjoint whole hash blocks at ``level0_base`` with ``os.pwrite`` on
    ``fd`` and disjoint entry ranges of the shared mapping. Returns the level-1 entries.
    A child that fails exits non-zero; this process then raises OSError (nothing is renamed
    into place: the caller's atomic writer discards the file).
    """
    per = params.digests_per_block
    dbs, hbs, slot = params.data_block_size, params.hash_block_size, params.slot_size
    level0_blocks = -(-params.data_blocks // per)
    workers = max(1, min(workers, level0_blocks))
    bounds = [level0_blocks * i // workers * per for i in range(workers)] + [params.data_blocks]
    entries = mmap.mmap(-1, level0_blocks * slot)    # MAP_SHARED | MAP_ANONYMOUS: children write here
    step = max(per, (CHUNK_BYTES // dbs) // per * per)

    def run_share(index: int, report: Progress | None) -> None:
        with memoryview(mm) as mv:
            for first in range(bounds[index], bounds[index + 1], step):
                count = min(step, bounds[index + 1] - first)
                level0, chunk_entries = hash_data_chunk(params, mv[first * dbs:(first + count) * dbs])
                hb = first // per
                view = memoryview(level0)
                written = 0
                while written < len(level0):       # pwrite may be partial for huge writes
                    written += os.pwrite(fd, view[written:], level0_base + hb * hbs + written)
                entries[hb * slot:hb * slot + len(chunk_entries)] = chunk_entries
                _release(mm, first * dbs, (first + count) * dbs)
                if report:
                    report((first + count - bounds[index]) * dbs)

    children = []
    try:
        for index in range(1, workers):
            pid = os.fork()
            if pid == 0:  # child: hash one share, never return into the caller's code
                code = 1
                try:
                    run_share(index, None)
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        total = params.data_size
        share = (bounds[1] - bounds[0]) * dbs
        # Progress: this process's share, scaled to the whole (the shares run side by side).
        run_share(0, (lambda done: progress(min(total - 1, done * total // share), total))
                  if progress and share else None)
    finally:
        failed = 0
        for pid in children:
            _, status = os.waitpid(pid, 0)
            failed += status != 0
    if failed:
        raise OSError(f"{failed} hashing worker(s) failed")
    if progress:
        progress(params.data_size, params.data_size)
    result = bytes(entries)
    entries.close()
    return result


def _release(mm, start: int, end: int) -> None:
    """Drop our page-table entries for data already hashed (MADV_DONTNEED on a shared file
    mapping: the page cache keeps the data, the pages just stop counting in this process's
    RSS), so memory use stays flat however large the image is."""
    start -= start % mmap.PAGESIZE
    with contextlib.suppress(AttributeError, OSError, ValueError):
        mm.madvise(mmap.MADV_DONTNEED, start, end - start)


@dataclass(frozen=True, slots=True)
class FormatResult:
    root_hash: bytes
    layout: TreeLayout
    hash_path: str
    in_place: bool


def format_file(data_path: str, params: VerityParams, *, hash_path: str | None = None,
                workers: int | None = None, progress: Progress | None = None) -> FormatResult:
    """Build the tree of ``data_path`` and write superblock + hash area to ``hash_path``.

    ``hash_path`` None (or the data file itself) puts the hash area into the data file at
    ``params.hash_offset``, which must lie after the data.
    """
    workers = workers or default_workers()
    layout = compute_layout(params)
    _check_data_size(data_path, params)
    same = hash_path is None or _same_file(data_path, hash_path)
    target = data_path if same else hash_path
    if same and params.hash_offset < params.data_size:
        raise UsageError(f"hash area at offset {params.hash_offset} overlaps the "
                         f"{params.data_size} bytes of data",
                         hint="use --hash-offset at or after the end of the data, or fewer --data-blocks")
    # An existing hash device (or a hash area at an offset in an existing file) is updated in
    # place; renaming a temporary file over a block device node would be wrong.
    in_place = same or (Path(target).exists() and (params.hash_offset > 0 or not Path(target).is_file()))
    base = params.hash_offset
    head = build_superblock(params) if params.superblock else b""
    if in_place and not Path(target).is_file():
        room = file_size(target, what="hash device")
        if room < layout.hash_end:
            raise UsageError(f"hash device {target!r} has {room} bytes; the hash area needs "
                             f"{layout.hash_end}", hint="use a larger hash partition or --hash-offset")
    try:
        return _format(data_path, params, layout, target, in_place, base, head, workers, progress)
    except OSError as e:
        raise InputFileError(f"cannot write the hash area to {target!r}: {e.strerror or e}",
                             hint="check free space and permissions") from None


def _format(data_path, params, layout, target, in_place, base, head, workers, progress) -> FormatResult:
    with _mapped(data_path, params.data_size) as mm:
        if in_place:
            try:
                fd = os.open(target, os.O_RDWR)
            except OSError as e:
                raise InputFileError(f"cannot open {target!r} for writing: {e.strerror}") from None
            try:
                root = _build(params, layout, mm, workers, progress,
                              lambda off, b: os.pwrite(fd, b, off), data_path, fd)
                if head:
                    os.pwrite(fd, head, base)
                if os.fstat(fd).st_size < layout.hash_end and not _is_block_device(fd):
                    os.ftruncate(fd, layout.hash_end)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with atomic_writer(target, what="hash file") as f:
                def write_at(off: int, b: bytes) -> None:
                    f.seek(off)
                    f.write(b)
                root = _build(params, layout, mm, workers, progress, write_at, data_path, f.fileno())
                if head:
                    write_at(base, head)
                f.truncate(layout.hash_end)
    return FormatResult(root, layout, str(target), in_place)


def _build(params, layout, mm, workers, progress, write_at, path, fd=None) -> bytes:
    if not layout.levels:
        if progress:
            progress(params.data_size, params.data_size)
        return entry_digest(params, digest_entries(params, mm[:params.data_block_size],
                                                   params.data_block_size), 0)
    level0_base = layout.level_offset(0)
    per = params.digests_per_block
    hbs = params.hash_block_size
    level1: list[bytes] = []

    def consume(first: int, level0: bytes, entries: bytes) -> None:
        write_at(level0_base + first // per * hbs, level0)
        level1.append(entries)

    use_fork = BACKEND == "fork" or (BACKEND == "auto" and params.data_size >= PROCESS_MIN_BYTES)
    if use_fork and fd is not None and workers > 1 and hasattr(os, "fork"):
        level1.append(_hash_level0_forked(params, mm, workers, progress, fd, level0_base))
    else:
        _hash_level0(params, mm, workers, progress, consume, path)
    upper = build_upper_levels(layout, b"".join(level1))
    for i, blocks in enumerate(upper.blocks, start=1):
        write_at(layout.level_offset(i), blocks)
    return upper.root_hash


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_block_device(fd: int) -> bool:
    import stat
    return stat.S_ISBLK(os.fstat(fd).st_mode)


def read_superblock_params(hash_path: str, hash_offset: int = 0) -> VerityParams | None:
    """Parameters from the superblock at ``hash_offset``, or None when there is none."""
    file_size(hash_path, what="hash file")  # one-line errors for missing/unreadable files
    with open(hash_path, "rb") as f:
        f.seek(hash_offset)
        head = f.read(SUPERBLOCK_SIZE)
    if not is_superblock(head):
        return None
    return parse_superblock(head, hash_offset=hash_offset, source=hash_path)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    root_hash: bytes
    kind: str | None = None          # "data" or "hash"
    block: int | None = None         # data block number, or hash block index within its level
    level: int | None = None         # tree level of a bad hash block
    offset: int | None = None        # byte offset of the bad block in its file
    reason: str | None = None


def verify_files(data_path: str, hash_path: str, params: VerityParams, root_hash: bytes, *,
                 workers: int | None = None, progress: Progress | None = None) -> VerifyReport:
    """Check data and hash area against ``root_hash`` top-down; report the first bad block."""
    workers = workers or default_workers()
    layout = compute_layout(params)
    _check_data_size(data_path, params)
    hsize = file_size(hash_path, what="hash file")
    if hsize < layout.hash_end:
        raise UsageError(f"hash file {hash_path!r} has {hsize} bytes; the tree needs {layout.hash_end}",
                         hint="wrong parameters or --hash-offset?")
    hbs = params.hash_block_size
    slot = params.slot_size
    root_entry = root_hash + bytes(slot - params.digest_size)

    def bad(kind, block, level, offset, reason):
        return VerifyReport(False, root_hash, kind, block, level, offset, reason)

    with _mapped(data_path, params.data_size) as mm, open(hash_path, "rb") as hf:
        def pread(off: int, n: int) -> bytes:
            return os.pread(hf.fileno(), n, off)

        if not layout.levels:
            got = entry_digest(params, digest_entries(params, mm[:params.data_block_size],
                                                      params.data_block_size), 0)
            if got != root_hash:
                return bad("data", 0, None, 0, "data block 0 does not match the root hash")
            return VerifyReport(True, root_hash)

        # Upper levels, top-down: each stored level must hash to the entries of the one above.
        top = len(layout.levels) - 1
        expected = root_entry
        stored = {}
        for lv in reversed(layout.levels[1:]):
            stored[lv.index] = pread(layout.level_offset(lv.index), lv.blocks * hbs)
        for lv in reversed(layout.levels[1:]):
            blocks = stored[lv.index]
            got = digest_entries(params, blocks, hbs)
            i = _first_diff(expected[:len(got)], got, slot)
            if i is not None:
                return bad("hash", i, lv.index, layout.level_offset(lv.index) + i * hbs,
                           f"hash block {i} of level {lv.index} does not match "
                           + ("the root hash" if lv.index == top else f"level {lv.index + 1}"))
            spare = _first_nonzero_spare(params, blocks, lv.index, layout)
            if spare is not None:
                return bad("hash", spare, lv.index, layout.level_offset(lv.index) + spare * hbs,
                           f"unused bytes of hash block {spare} of level {lv.index} are not zero")
            expected = _unpack(params, blocks)

        # Level 0 against the data, streamed. ``expected`` now holds the level-1 entries.
        per = params.digests_per_block
        level0_base = layout.level_offset(0)
        failure: list[VerifyReport] = []

        def consume(first: int, level0: bytes, entries: bytes) -> None:
            if failure:
                return
            hb = first // per
            stored0 = pread(level0_base + hb * hbs, len(level0))
            if stored0 == level0:
                return
            got = digest_entries(params, stored0, hbs)
            exp = expected[hb * slot:hb * slot + len(got)]
            i = _first_diff(exp, got, slot)
            if i is not None:
                failure.append(bad("hash", hb + i, 0, level0_base + (hb + i) * hbs,
                                   f"hash block {hb + i} of level 0 does not match level 1"
                                   if top else f"hash block {hb + i} of level 0 does not match the root hash"))
                return
            computed = _unpack(params, level0)
            held = _unpack(params, stored0)
            j = _first_diff(held, computed, slot)
            if j is not None and first + j < params.data_blocks:
                block = first + j
                failure.append(bad("data", block, None, block * params.data_block_size,
                                   f"data block {block} does not match its hash"))
            else:
                failure.append(bad("hash", hb, 0, level0_base + hb * hbs,
                                   f"unused bytes of hash block {hb} of level 0 are not zero"))

        _hash_level0(params, mm, workers, progress, consume, data_path)
        if failure:
            return failure[0]
    return VerifyReport(True, root_hash)


def _first_diff(a: bytes, b: bytes, slot: int) -> int | None:
    if a == b:
        return None
    n = min(len(a), len(b))
    for i in range(0, n, slot):
        if a[i:i + slot] != b[i:i + slot]:
            return i // slot
    return n // slot


def _unpack(params: VerityParams, blocks: bytes) -> bytes:
    """Entries region of each hash block, concatenated (spare tails dropped)."""
    used = params.digests_per_block * params.slot_size
    hbs = params.hash_block_size
    if used == hbs:
        return blocks
    return b"".join(blocks[o:o + used] for o in range(0, len(blocks), hbs))


def _first_nonzero_spare(params: VerityParams, blocks: bytes, level: int, layout: TreeLayout) -> int | None:
    """Index of the first hash block whose unused tail (after its entries) is not zero."""
    hbs = params.hash_block_size
    slot = params.slot_size
    per = params.digests_per_block
    below = layout.levels[level - 1].blocks if level else params.data_blocks
    for b in range(len(blocks) // hbs):
        n = min(per, below - b * per)
        tail = blocks[b * hbs + n * slot:(b + 1) * hbs]
        if tail.count(0) != len(tail):
            return b
    return None
