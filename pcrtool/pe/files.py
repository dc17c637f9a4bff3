"""PE files (adapter): read PE inputs, sign a release's set in one process, write outputs
atomically and check what was written. ``pcrtool pe`` (the CLI) parses options and prints; the
file, process and thread plumbing lives here.

Signing a set (``sign_files``), the work split over two cores:

1. every input is opened, then copied by the kernel into its output's temporary file
   (``copy_file_range``) and parsed and checked from a read-only mapping of that copy, before
   any output is in place: the bytes hashed and summed are the bytes of the output file, even
   if someone rewrites an input meanwhile (an input that cannot be copied is read into memory
   instead, and its body written from there);
2. a forked child sums the words of every input's body (the PE CheckSum, ``forked_word_sums``)
   while this process opens the key (a key file with a certificate file without cryptography's
   X.509 module: ``_open_signer``) and then hashes every input: two processes, no GIL shared;
3. per input: signed attributes, one RSA signature, verified against the certificate's public
   key, the PKCS#7 (DER built by ``pcrtool.sign.authenticode_pkcs7``), the EDK2 layout check; the
   headers (CheckSum derived from the body's sum, no second pass) and the new WIN_CERTIFICATE
   are written, the file is checked (``_check_written``: see there why this is as strong as
   hashing the output again) and renamed into place (``fileio.atomic_writer``: fsync, rename).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from pcrtool import fileio
from pcrtool.errors import InputFileError, PcrtoolError, SignatureError, UsageError

_MAP_FROM = 16 << 20     # inputs this large are mapped, not copied (read_pe)
_FORK_FROM = 4 << 20     # total input size from which the checksum runs in a forked child


def read_pe(path: str, what: str = "PE file"):
    """A PE to read: large regular files are mapped (no 75 MB copy); errors as fileio reports them.

    Replacing the file afterwards (atomic rename, even onto the same path) leaves the mapping valid.
    """
    import mmap
    import stat

    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size >= _MAP_FROM:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        pass
    return fileio.read_bytes(path, what=what)


def signing_time():
    """SOURCE_DATE_EPOCH when set (reproducible output), else now, as systemd-sbsign does."""
    import datetime as dt

    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    try:
        return dt.datetime.fromtimestamp(int(value), dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                         hint="unset it or give e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)") from None


def sign_outputs(files: list[str], output: str | None, suffix: str | None) -> list[str]:
    """Where each signed input goes: ``output`` (one input), ``output``/NAME (a directory) or
    FILE+``suffix``; two inputs never share an output, and a set never replaces its inputs."""
    if (output is None) == (suffix is None):
        raise UsageError("give exactly one of --output and --suffix")
    if suffix is not None:
        if not suffix or "/" in suffix:
            raise UsageError(f"--suffix {suffix!r}: give a file-name suffix such as .signed")
        outs = [f + suffix for f in files]
    elif len(files) == 1 and not os.path.isdir(output):
        outs = [output]
    else:
        if not os.path.isdir(output):
            raise UsageError(f"{len(files)} inputs need --output to be an existing directory (or --suffix)")
        outs = [os.path.join(output, os.path.basename(f)) for f in files]
    if len(set(map(os.path.abspath, outs))) != len(outs):
        raise UsageError("two inputs would be written to the same output", hint="use --suffix")
    same = [f for f, o in zip(files, outs) if os.path.abspath(f) == os.path.abspath(o)]
    if same and len(files) > 1:
        raise UsageError(f"{same[0]}: the output would replace the input", hint="use another directory or --suffix")
    return outs


def load_sign_key(key: str, cert: str | None):
    """The signer for ``pe sign``. A key file skips cryptography's RSA key consistency check
    (~45 ms): every signature is verified against the certificate's public key before anything
    is written (``pcrtool.pe.sign.sign_prepared``), so a faulty key cannot publish a faulty
    signature (reasoning in ``pcrtool.sign.keyfile.load_private_key_bytes``). Other backends
    load as usual."""
    from pcrtool.sign import load_signer
    from pcrtool.sign.api import KeyRef, KeyScheme

    ref = KeyRef.parse(key)
    if ref.scheme is KeyScheme.FILE:
        from pcrtool.sign.keyfile import FileSigner
        return FileSigner.from_file(ref.target, certificate=cert, signatures_verified_by_caller=True)
    return load_signer(ref, certificate=cert)


def chain_certificates(paths: list[str]) -> tuple[bytes, ...]:
    if not paths:
        return ()
    from pcrtool.pe.sigdb import load_sigdb
    out: list[bytes] = []
    for path in paths:
        out += load_sigdb(fileio.read_bytes(path, what="chain certificate")).certificates
    return tuple(out)


def background(fn):
    """Run ``fn`` on a new thread; returns a callable that waits and returns (or raises) its result.

    A bare ``_thread`` thread: no ``threading`` import and no start handshake, which would make
    the caller wait for the GIL while the new thread already works (up to the 5 ms switch
    interval). Callers always collect the result, so nothing is left running."""
    import _thread

    box: list = []
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box.append((False, e))
        finally:
            done.release()

    _thread.start_new_thread(run, ())

    def result():
        with done:
            pass
        ok, value = box[0]
        if not ok:
            raise value
        return value
    return result


def forked_word_sums(datas: list, starts: list[int]):
    """``word_sum(data, start)`` of each input (its body's share of the PE CheckSum), computed by a
    forked child so that it runs on the other core while this process loads the key and hashes
    (``int.from_bytes`` holds the GIL; a thread would take turns with them). Returns a callable
    giving the list. Forks before any thread is started; if the fork or the child fails for any
    reason the sums are computed in this process."""
    from pcrtool.pe.digest import word_sum

    def here() -> list[int]:
        return [word_sum(d, s) for d, s in zip(datas, starts)]

    if sum(len(d) for d in datas) < _FORK_FROM or not hasattr(os, "fork"):
        return here
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return here
    if pid == 0:  # child: only computes and writes two bytes per input; never returns into the caller
        try:
            os.close(r)
            out = b"".join(word_sum(d, s).to_bytes(2, "little") for d, s in zip(datas, starts))
            while out:
                out = out[os.write(w, out):]
        finally:
            os._exit(0)
    os.close(w)

    def result() -> list[int]:
        want, buf = 2 * len(datas), b""
        try:
            while len(buf) < want:
                part = os.read(r, want - len(buf))
                if not part:
                    break
                buf += part
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        if len(buf) != want:
            return here()
        return [int.from_bytes(buf[i:i + 2], "little") for i in range(0, want, 2)]
    return result


def _open_signer(key: str, cert: str | None):
    """(signer, certificate DER, whether the certificate was matched to the key here) for
    ``pe sign``; the caller closes the signer.

    A key file with a certificate file is opened without cryptography's X.509 module (~20 ms):
    the certificate's DER is checked by ``pcrtool.sign.x509_der`` and its subjectPublicKeyInfo
    must equal the key's byte for byte. Anything else, or any doubt, opens the signer the full
    way (``load_sign_key``), which then accepts or refuses exactly as before, in its own words."""
    from pcrtool.sign.api import KeyRef, KeyScheme

    ref = KeyRef.parse(key)
    if cert and ref.scheme is KeyScheme.FILE:
        from pcrtool.errors import PcrtoolError
        from pcrtool.sign import x509_der
        try:
            data = fileio.read_bytes(cert, what="certificate")
            if b"X509 CERTIFICATE" in data or b"TRUSTED CERTIFICATE" in data:
                raise x509_der.NotACertificate("another PEM label")
            der = x509_der.first_pem_certificate(data)
            spki = x509_der.certificate_public_key_info(der)
        except (x509_der.NotACertificate, PcrtoolError):
            spki = None
        if spki is not None:
            from pcrtool.sign.api import spki_der
            from pcrtool.sign.keyfile import FileSigner
            signer = FileSigner.from_file(ref.target, signatures_verified_by_caller=True)
            if signer.certificate() is None and spki_der(signer.public_key()) == spki:
                return signer, der, True
            signer.close()
    from pcrtool.pe.sign import certificate_bytes
    signer = load_sign_key(key, cert)
    try:
        return signer, certificate_bytes(signer), False
    except BaseException:
        signer.close()
        raise


def _named(file: str, fn, *args):
    """``fn(*args)`` for the input ``file``: a refusal names the file (one of a set of ten)."""
    try:
        return fn(*args)
    except PcrtoolError as e:
        e.message = f"{file}: {e.message}"
        e.args = (e.message,)
        raise


def sign_files(files: list[str], outputs: list[str], *, key: str, cert: str | None, alg, when,
               chain: list[str] = (), detached: bool = False) -> Iterator[tuple[str, str]]:
    """Sign ``files`` into ``outputs`` (PKCS#7 only with ``detached``) with one key load, as
    described in the module docstring; yields (input, output) as each output is in place.

    Every input is opened and checked before the first output is in place. The outputs'
    temporary files are opened early and receive their inputs (copied in the kernel) before the
    key loads, so a failure leaves at most the outputs already yielded (the others' temporary
    files are removed)."""
    from pcrtool.pe.digest import image_digest
    from pcrtool.pe.sign import PreparedSignature, check_signable, idc_and_attributes

    if not detached:
        for out in outputs:
            fileio.require_file_output(out, what="signed PE", why="it is read back and checked")
    sources: list = []   # per input: a descriptor to copy from, or bytes read through fileio (which words errors)
    try:
        for f in files:
            sources.append(_open_input(f))
    except BaseException:
        for src in sources:
            if isinstance(src, int):
                os.close(src)
        raise
    writers: list = []   # (context manager, file) of each output not yet in place
    try:
        if not detached:
            for out in outputs:
                cm = fileio.atomic_writer(out, mode=0o644, what="signed PE")
                writers.append((cm, cm.__enter__()))
        # Each input lands in its output's temporary file by a copy in the kernel, and is parsed,
        # hashed and summed from a mapping of that copy: what is signed is what is written.
        datas, copied = [], []
        for i, file in enumerate(files):
            src, sources[i] = sources[i], None
            data = None
            if isinstance(src, int):
                if writers:
                    data = _copy_and_map(src, writers[i][1].fileno())   # closes src
                else:
                    os.close(src)
                src = None
            copied.append(data is not None)
            if data is None:
                data = src if src is not None else fileio.read_bytes(file, what="PE file")
            datas.append(data)
        checked = [_named(file, check_signable, d, alg) for file, d in zip(files, datas)]  # (image, pad, start)
        sums = forked_word_sums(datas, [start for _, _, start in checked])
        # Bodies of inputs that could not be copied in the kernel are written from memory (GIL-free).
        pending = [(writers[i][1].fileno(), memoryview(data)[start:], start)
                   for i, (data, (_, _, start)) in enumerate(zip(datas, checked)) if writers and not copied[i]]
        bodies = background(lambda: [_pwrite(*job) for job in pending]) if pending else (lambda: None)
        try:
            signer, cert_der, key_matches = _open_signer(key, cert)
        except BaseException:
            _joined(bodies)
            raise
        with signer:
            from pcrtool.pe.sign import check_certificate_key, check_signing_key, sign_prepared
            try:
                check_signing_key(signer)
                if not key_matches:
                    check_certificate_key(cert_der, signer.public_key())
                chain_der = chain_certificates(list(chain))
            finally:
                written = _joined(bodies)
            written()
            digests = [image_digest(image, alg, pad) for image, pad, _ in checked]   # while the child sums
            prepared = [PreparedSignature(data, alg, digest, *idc_and_attributes(digest, alg, when), body_sum)
                        for data, digest, body_sum in zip(datas, digests, sums())]
            for file, out, prep, (image, pad, start) in zip(files, outputs, prepared, checked):
                chunks = sign_prepared(prep, signer, certificate_der=cert_der, chain=chain_der, checked=True)
                if detached:
                    from pcrtool.sign.authenticode_pkcs7 import der_length
                    der = chunks[-1][8:]
                    fileio.write_atomic(out, der[:der_length(der)], what="PKCS#7")
                else:
                    cm, f = writers[0]
                    _write_rest(f, out, chunks, image, pad, start)
                    writers.pop(0)
                    cm.__exit__(None, None, None)          # fsync, rename into place
                yield file, out
    except BaseException as e:
        for cm, _f in writers:                               # removes each temporary file
            with contextlib.suppress(BaseException):
                cm.__exit__(type(e), e, e.__traceback__)
        for src in sources:
            if isinstance(src, int):
                with contextlib.suppress(OSError):
                    os.close(src)
        raise


def _open_input(path: str):
    """A read-only descriptor of a regular, non-empty input file; anything else is read through
    fileio (bytes), which also words every error the way the other commands do."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return fileio.read_bytes(path, what="PE file")
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return fileio.read_bytes(path, what="PE file")
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        os.close(fd)
        return fileio.read_bytes(path, what="PE file")
    return fd


def _copy_and_map(src: int, dst: int):
    """Copy the whole file ``src`` (a descriptor, closed here) into the empty file ``dst`` in the
    kernel (copy_file_range: no copy through this process, a reflink where the file system has
    them) and return a read-only mapping of the copy; None when that cannot be done (then the
    caller reads the input)."""
    import errno
    import mmap

    try:
        size = os.fstat(src).st_size
        done = 0
        while done < size:
            try:
                n = os.copy_file_range(src, dst, size - done, done, done)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                    raise
                n = _copy_chunk(src, dst, done, size - done)
            if n == 0:
                break
            done += n
        if done != size or os.fstat(src).st_size != size:
            os.ftruncate(dst, 0)
            return None
        return mmap.mmap(dst, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError):
        try:
            os.ftruncate(dst, 0)
        except OSError:
            pass
        return None
    finally:
        os.close(src)


def _copy_chunk(src: int, dst: int, offset: int, count: int) -> int:
    data = os.pread(src, min(count, 8 << 20), offset)
    _pwrite(dst, data, offset)
    return len(data)


def _joined(job):
    """Wait for a background job (the body-writing thread); returns a callable giving its result
    or raising its error: no thread writes into a file the caller is about to remove."""
    try:
        value = job()
    except BaseException as e:  # noqa: BLE001 - re-raised when the result is asked for
        error = e

        def fail():
            raise error
        return fail
    return lambda: value


def _pwrite(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_rest(f, output: str, chunks: list, image, pad: int, start: int) -> None:
    """Complete a signed file whose body (``chunks[1]``, from ``start``) is written: the headers
    and the padded WIN_CERTIFICATE at the end; then check it (``_check_written``)."""
    if len(chunks) != 4 or len(chunks[0]) != start or len(chunks[1]) + start != len(image.data):
        raise SignatureError(f"{output!r}: the signed layout is not the one written ahead", hint="this is a bug in pcrtool")
    _pwrite(f.fileno(), chunks[0], 0)
    _pwrite(f.fileno(), bytes(chunks[2]) + bytes(chunks[3]), len(image.data))
    _check_written(f.fileno(), output, chunks, image, pad)


def _write_checked(output: str, chunks: list, image, pad: int) -> None:
    """Write ``chunks`` atomically; the file is checked (``_check_written``) before it is renamed
    into place, so a file that fails the check never appears."""
    with fileio.atomic_writer(output, mode=0o644, what="signed PE") as f:
        _pwrite(f.fileno(), chunks[1], len(chunks[0]))
        _write_rest(f, output, chunks, image, pad, len(chunks[0]))


def _check_written(fd: int, output: str, chunks: list, image, pad: int) -> None:
    """Check the written file (read back through a mapping of it) without hashing it again.

    Why this is as strong as re-hashing the output as EDK2 would: the signature was verified
    against the certificate's public key over the signed attributes, whose messageDigest covers
    the SpcIndirectDataContent holding the image digest (``sign_prepared``). That digest was
    computed over the ranges ``hash_ranges(input, pad)`` of the output file's own body (a
    mapping of the temporary file the input was copied into, which only this process writes)
    or of the immutable in-memory copy the body was written from. So the output's EDK2 digest equals the signed one exactly when the output,
    parsed from the file itself, has the size written, the header bytes written (they differ
    from the input's only in CheckSum and the certificate directory entry, which EDK2 does not
    hash), the same hash ranges as the input plus its padding, and, as its last table entry, the
    WIN_CERTIFICATE written. A re-hash would re-read the same page cache this check reads; it
    could not see more.
    """
    import mmap

    from pcrtool.errors import PcrtoolError
    from pcrtool.pe.digest import hash_ranges
    from pcrtool.pe.image import PeImage

    head, entry = chunks[0], chunks[-1]
    size = sum(len(c) for c in chunks)
    problem = None
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            written = PeImage.parse(mm)
            certs = written.certificates()
            if len(mm) != size or mm[:len(head)] != head:
                problem = "its size or headers differ from what was written"
            elif hash_ranges(written) != hash_ranges(image, pad):
                problem = "its hashed ranges differ from the input's"
            elif not certs or certs[-1].offset != size - len(entry) or mm[size - len(entry):] != entry:
                problem = "its last certificate-table entry is not the new signature"
            del written, certs
    except (OSError, ValueError) as e:
        problem = f"cannot read it back: {e}"
    except PcrtoolError as e:
        problem = e.message
    if problem:
        raise SignatureError(f"the written file {output!r} does not check out ({problem}); not written",
                             hint="this is a bug in pcrtool (or the file system); rerun with --debug and report it")


def _map(path: str):
    """The written file, read back through mmap (no 75 MB copy) for the re-verification."""
    import mmap

    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise InputFileError(f"cannot read back {path!r}: {e}") from None


def write_and_reverify(output: str, signed, cert_der: bytes) -> None:
    """Atomic write (``signed`` is bytes or a list of chunks), then read the file back and check
    the new signature as EDK2 would; a file that does not verify is removed. For signatures made
    elsewhere (``pe attach``, ``pe import-pkcs7``)."""
    from pcrtool.pe.sigdb import SignatureDb
    from pcrtool.pe.verify import verify_image

    chunks = [signed] if isinstance(signed, (bytes, bytearray)) else signed
    fileio.require_file_output(output, what="signed PE", why="it is read back and re-verified")
    with fileio.atomic_writer(output, mode=0o644, what="signed PE") as f:
        digest256 = _write_hashing(f, chunks)
    _release_mapped_input(chunks)
    result = verify_image(_map(output), db=SignatureDb(certificates=[cert_der]), sha256_digest=digest256)
    last = result.signatures[-1] if result.signatures else None
    if not result.table_ok or last is None or not (last.digest_matches and last.signature_valid):
        os.unlink(output)
        raise SignatureError(f"the written file {output!r} does not verify ({result.reason}); removed it",
                             hint="this is a bug in pcrtool; rerun with --debug and report it")


def _write_hashing(f, chunks) -> bytes | None:
    """Write ``chunks`` to ``f`` while a thread computes the SHA-256 Authenticode digest of the
    file being written, read back from the file itself (a mapping of it: the page cache) right
    behind the writer: the re-verification's digest costs no extra pass. Returns that digest
    (None for small outputs, written plainly: ``verify_image`` then hashes the file itself).

    The file gets its final size first; the first chunk holds all headers (``signed_chunks``),
    so the output is parsed from the file once it is written, and every range EDK2 hashes is
    read only after the writer has passed its end.
    """
    import contextlib
    import mmap
    import threading

    from pcrtool.model import HashAlg
    from pcrtool.pe.digest import image_digest
    from pcrtool.pe.image import PeImage

    total = sum(len(c) for c in chunks)
    if total < (16 << 20) or len(chunks) < 2:
        for chunk in chunks:
            f.write(chunk)
        return None
    f.truncate(total)
    f.write(chunks[0])
    f.flush()
    cond = threading.Condition()
    state = {"written": len(chunks[0]), "aborted": False, "hashed": 0, "released": 0}

    def ready(end: int) -> None:
        # Drop the mapping's pages already hashed (the page cache keeps them; a re-read just
        # refaults): the output costs one 8 MiB window of RSS, not the whole image.
        hashed = state["hashed"] - state["hashed"] % mmap.PAGESIZE
        if hashed > state["released"]:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, state["released"], hashed - state["released"])
            state["released"] = hashed
        state["hashed"] = end
        with cond:
            while state["written"] < end and not state["aborted"]:
                cond.wait()
            if state["written"] < end:
                raise OSError("the output was not completely written")

    mm = mmap.mmap(f.fileno(), total, access=mmap.ACCESS_READ)
    try:
        job = background(lambda: image_digest(PeImage.parse(mm), HashAlg.SHA256, ready=ready))
        try:
            step = 8 << 20
            for chunk in chunks[1:]:
                view = memoryview(chunk)
                for pos in range(0, len(view), step):
                    f.write(view[pos:pos + step])
                    f.flush()
                    with cond:
                        state["written"] += len(view[pos:pos + step])
                        cond.notify_all()
        finally:
            with cond:
                state["aborted"] = state["written"] < total
                cond.notify_all()
            try:
                digest = job()   # also waits for the thread when the write failed
            except Exception:  # noqa: BLE001 - verify_image then hashes (and reports) on its own
                digest = None
        return digest
    finally:
        with contextlib.suppress(BufferError):
            mm.close()


def _release_mapped_input(chunks) -> None:
    """The input is written: drop our page-table entries for a mapped input (MADV_DONTNEED on a
    read-only file mapping keeps the page cache, it just stops counting in our RSS) before the
    output is mapped for the re-verification, so peak memory is one image, not two."""
    import contextlib
    import mmap

    for chunk in chunks:
        obj = getattr(chunk, "obj", None)
        if isinstance(obj, mmap.mmap):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                obj.madvise(mmap.MADV_DONTNEED)
