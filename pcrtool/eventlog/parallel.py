"""Adapter: ``eventlog show --json=short`` of a large log on several cores, output in log order.

The pure parts do the work (``EventLogStream.record_starts`` validates every record first, so
nothing is printed for a corrupt log; ``RecordRenderer`` writes the JSON of a range of records;
``Replayer`` replays). This module only splits the validated record list into chunks and runs
them in forked processes (POSIX ``os.fork``; the log is an mmap or bytes shared copy-on-write):

- chunk k is rendered by renderer k % W; the renderers take turns writing to the output fd,
  passing a one-byte token around a ring of pipes, so the bytes are exactly the one-process
  output, while each process renders its next chunk as soon as it has written the last one;
- the replay (a hash chain: one process) runs in its own process and hands its JSON to whoever
  writes the last chunk;
- small logs, or no ``os.fork``: everything in this process, same bytes.
"""

from __future__ import annotations

import os
import sys

from pcrtool.errors import PcrtoolError

PARALLEL_MIN_EVENTS = 20_000
CHUNK_EVENTS = 500


def _release(buf, start: int, stop: int) -> None:
    """Drop the pages of a mapped log wholly inside [start, stop) from this process (they were
    rendered already); no-op for bytes."""
    import mmap

    if isinstance(buf, mmap.mmap):
        page = mmap.PAGESIZE
        lo = -(-start // page) * page
        hi = stop - stop % page
        if hi > lo:
            buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd: int) -> bytes:
    parts = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def show_json(buf, stream, starts=None, *, decode: bool, pcrs, with_replay: bool,
              header: str | None = None, out_fd: int | None = None, workers: int | None = None,
              chunk_events: int = CHUNK_EVENTS, min_events: int = PARALLEL_MIN_EVENTS) -> None:
    """Write the ``eventlog show --json=short`` document of ``stream`` (over ``buf``) to ``out_fd``
    (default stdout). ``starts`` (from ``stream.record_starts()``) is computed here if not given:
    every record is validated before the first byte is written. ``header`` defaults to
    ``header_text(stream.log)``."""
    from pcrtool.eventlog.export import header_text
    from pcrtool.eventlog.fastjson import RecordRenderer

    if out_fd is None:
        sys.stdout.flush()
        out_fd = sys.stdout.fileno()
    if workers is None:
        workers = min(2, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1
    parallel = workers >= 2 and hasattr(os, "fork")
    if starts is None:
        starts = stream.record_starts()
    if header is None:
        header = header_text(stream.log)
    log = stream.log
    renderer = RecordRenderer(buf, log, decode=decode)
    count = len(starts) - 1
    pcr_set = frozenset(pcrs) if pcrs else None
    if count < min_events or not parallel:
        _write_all(out_fd, header.encode())
        sep = ""
        for lo in range(0, count, chunk_events):
            hi = min(lo + chunk_events, count)
            text = renderer.render(starts, lo, hi, pcr_set)
            _release(buf, starts[lo], starts[hi])
            if text:
                if sep:
                    _write_all(out_fd, b",")
                _write_all(out_fd, text.encode())
                sep = ","
        _write_all(out_fd, _tail(buf, stream, starts, with_replay).encode())
        return
    # (Starting the replay before the validation walk, to overlap the two, was measured: it
    # costs a second walk and was no faster on two cores.)
    replay_job = _start_replay(buf, stream, starts) if with_replay else None
    _parallel(renderer, starts, count, pcr_set, replay_job, header, out_fd, workers, chunk_events)


def _tail(buf, stream, starts, with_replay: bool) -> str:
    """The end of the document: "]", the replayed "pcrs" if asked, "}\\n" (as ``iter_log_json``)."""
    tail = "]"
    if with_replay:
        from pcrtool.eventlog.export import json_text
        from pcrtool.eventlog.replay import replay_records

        result = replay_records(buf, stream.log, starts)
        tail += ',"pcrs":' + json_text(result.pcrs.to_json())
    return tail + "}\n"


def _start_replay(buf, stream, starts):
    """Fork the replay process; returns (pid, read fd of its tail text)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - child process (covered through its output)
        code = 0
        try:
            os.close(r)
            _write_all(w, _tail(buf, stream, starts, True).encode())
        except BrokenPipeError:   # the reader stopped (stdout closed early)
            code = _EXIT_PIPE
        except BaseException:   # noqa: BLE001 - reported through the exit status
            code = 1
        os._exit(code)
    os.close(w)
    return pid, r


def _parallel(renderer, starts, count, pcr_set, replay_job, header, out_fd, workers,
              chunk_events) -> None:
    chunks = [(lo, min(lo + chunk_events, count)) for lo in range(0, count, chunk_events)]
    last_owner = (len(chunks) - 1) % workers
    tokens = [os.pipe() for _ in range(workers)]        # tokens[w]: "your turn", read by w
    if replay_job is not None:
        tail_r = replay_job[1]       # the replay's JSON goes to the writer of the last chunk
        pids = [replay_job[0]]
    else:
        tail_r = -1
        pids = []
    for w in range(1, workers):
        pid = os.fork()
        if pid == 0:   # pragma: no cover - child process
            code = 0
            try:
                _render_loop(renderer, starts, chunks, pcr_set, w, workers, tokens, tail_r,
                             last_owner, header, out_fd)
            except BrokenPipeError:
                code = _EXIT_PIPE
            except _PeerStopped:      # the process before me stopped; its status says why
                code = _EXIT_PEER
            except BaseException:   # noqa: BLE001 - report through the exit status
                code = 1
            os._exit(code)
        pids.append(pid)
    failed = None
    try:
        _render_loop(renderer, starts, chunks, pcr_set, 0, workers, tokens, tail_r, last_owner,
                     header, out_fd)
    except BaseException as e:   # noqa: BLE001 - children are reaped before re-raising
        failed = e
    finally:
        statuses = [os.waitpid(p, 0)[1] for p in pids]
    codes = [os.waitstatus_to_exitcode(s) for s in statuses]
    if any(c not in (0, _EXIT_PIPE, _EXIT_PEER) for c in codes) or \
            (isinstance(failed, _PeerStopped) and _EXIT_PIPE not in codes):
        raise PcrtoolError("a worker process failed while writing the event log JSON",
                           hint="run again with PCRTOOL_JOBS=1 (one process) or report a bug") from failed
    if isinstance(failed, BrokenPipeError) or _EXIT_PIPE in codes:
        raise BrokenPipeError(32, "stdout closed early")   # as in one process
    if failed is not None:
        raise failed


_EXIT_PIPE = 32                       # a child's exit code: its output pipe was closed
_EXIT_PEER = 33                       # a child's exit code: the process before it stopped


class _PeerStopped(Exception):
    """The token pipe closed: the process before this one in the ring stopped."""
_NONE_YET, _SOME = b"\x01", b"\x02"   # the token says whether an event was written before


def _render_loop(renderer, starts, chunks, pcr_set, me, workers, tokens, tail_r, last_owner,
                 header, out_fd) -> None:
    """Render my chunks (k % workers == me) and write each in turn; closes all pipe ends."""
    nxt = (me + 1) % workers
    my_r, next_w = tokens[me][0], tokens[nxt][1]
    for w, (r, wr) in enumerate(tokens):
        if w != me:
            os.close(r)
        if w != nxt:
            os.close(wr)
    try:
        for k in range(me, len(chunks), workers):
            lo, hi = chunks[k]
            text = renderer.render(starts, lo, hi, pcr_set)
            _release(renderer.buf, starts[lo], starts[hi])
            if k == 0:
                state = _NONE_YET
                out = header + text
            else:
                state = os.read(my_r, 1)
                if state not in (_NONE_YET, _SOME):
                    raise _PeerStopped()
                out = ("," + text) if (text and state == _SOME) else text
            if out:
                _write_all(out_fd, out.encode())
            if text:
                state = _SOME
            if k + 1 < len(chunks):
                os.write(next_w, state)
        if me == last_owner:
            _write_all(out_fd, _read_all(tail_r) if tail_r >= 0 else b"]}\n")
    finally:
        os.close(my_r)
        os.close(next_w)
        if tail_r >= 0:
            os.close(tail_r)
