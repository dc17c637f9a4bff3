"""PCR 8 and 9: what GRUB (2.04+, ``tpm`` verifier) measures, from artefacts or from a reference log.

Rules (GRUB ``grub-core/commands/tpm.c``, checked on a real boot of Debian 12's signed GRUB, see
``eventlogs/README.md``):

- every command the script engine runs is an ``EV_IPL`` on PCR 8 whose data is
  ``"grub_cmd: " + argv joined by one space + NUL`` and whose digest is H(argv joined) — the text
  *after* the prefix, no NUL; arguments are measured after variable expansion and quote removal;
  a ``menuentry``'s block argument is its source text from ``{`` to ``}`` verbatim;
- the ``linux`` command adds ``kernel_cmdline: <kernel path> <args>`` the same way (the measured
  string has no ``BOOT_IMAGE=``; the kernel sees ``BOOT_IMAGE=<path> <args>``);
- every file GRUB opens through its verifiers (configs it ``source``s, the kernel, the initrd …)
  is an ``EV_IPL`` on PCR 9: data = the path as the command named it + NUL, digest = H(content);
- Debian's signed GRUB: its embedded ``normal (memdisk)/grub.cfg`` and the memdisk file are not
  measured; measuring starts with the memdisk config's first command.

:func:`run_script` interprets the part of the GRUB script language whose measurements are a
function of the files (see :data:`PREDICTED_CONSTRUCTS`); anything else raises
:class:`Unpredictable`, and the caller keeps those events from the reference log instead
(:func:`substitute_strings`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pcrtool.errors import FormatError, UsageError
from pcrtool.eventlog.families import GRUB_PREFIXES
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.tcg.constants import EventType

PCR_GRUB_STRINGS = 8
PCR_GRUB_FILES = 9

#: What :func:`run_script` predicts; everything else is kept from the reference log.
PREDICTED_CONSTRUCTS = (
    "commands with literal, quoted ('…', \"…\") and $var/${var} words; ';' and newlines; # comments",
    "set NAME=VALUE, NAME=VALUE, unset, export; insmod of a module built into the image",
    "if/elif/else/fi with [ … ] / test: -z -n -e -f -d = != ! -a -o (files: the release's file list)",
    "source / configfile FILE (measured on PCR 9, then interpreted)",
    "menuentry TITLE … { … } and booting the default entry (by index or title)",
    "linux PATH ARGS… (PCR 9 kernel, kernel_cmdline:) and initrd PATH… (PCR 9 each)",
)
#: Commands whose outcome depends on the machine (disks, environment block, user input).
UNPREDICTABLE_COMMANDS = frozenset({
    "search", "search.fs_uuid", "search.fs_label", "search.file", "load_env", "save_env", "blscfg",
    "function", "for", "while", "until", "submenu", "read", "probe", "regexp", "chainloader",
    "linuxefi", "initrdefi", "loopback", "smbios",
})


class Unpredictable(UsageError):
    """A GRUB construct whose measurements pcrtool cannot compute from the files."""


def string_measurement(text: str, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                       prefix: str = "grub_cmd") -> Measurement:
    """PCR 8 EV_IPL: data ``prefix: text`` + NUL, digest H(text) (the EV_IPL family's rule)."""
    if prefix not in GRUB_PREFIXES:
        raise ValueError(f"GRUB logs no PCR 8 string with prefix {prefix!r}")
    return Measurement.of_event(PCR_GRUB_STRINGS, EventType.EV_IPL, f"{prefix}: {text}",
                                f"{prefix}: {text}".encode() + b"\0", banks)


def file_measurement(path: str, content: bytes | Mapping[HashAlg, bytes],
                     banks: Sequence[HashAlg] = DEFAULT_BANKS) -> Measurement:
    """PCR 9 EV_IPL for a file GRUB read: digest H(content) (or the given digests), data path + NUL."""
    data = path.encode("utf-8") + b"\0"
    if isinstance(content, (bytes, bytearray, memoryview)):
        return Measurement.of_data(PCR_GRUB_FILES, EventType.EV_IPL, path, bytes(content), banks, data=data)
    missing = [a.bank_name for a in banks if a not in content]
    if missing:
        raise UsageError(f"{path}: no precomputed {missing[0]} file digest", hint="give the file instead")
    return Measurement(PCR_GRUB_FILES, {a: bytes(content[a]) for a in banks}, EventType.EV_IPL, path, data)


# --- the signed image: embedded config, prefix, memdisk ----------------------------------------

OBJ_TYPE_ELF, OBJ_TYPE_MEMDISK, OBJ_TYPE_CONFIG, OBJ_TYPE_PREFIX = 0, 1, 2, 3
MODULE_MAGIC = 0x676D696D  # "mimg"


@dataclass(frozen=True, slots=True)
class GrubImage:
    """What ``grub-mkimage`` embedded: early config, prefix, memdisk (a FAT image) files."""

    config: str | None
    prefix: str | None
    memdisk: dict[str, bytes] = field(default_factory=dict)
    modules: frozenset[str] = frozenset()   # built in: `insmod` of these reads no file


def read_grub_image(data: bytes) -> GrubImage:
    """The ``mods`` section of a GRUB EFI image: embedded config, prefix and memdisk files."""
    from pcrtool.pe import PeImage

    pe = PeImage.parse(data)
    mods = pe.section("mods")
    if mods is None:
        raise FormatError("not a GRUB EFI image: no 'mods' section", hint="give grubx64.efi (signed or not)")
    base = mods.raw_offset
    if len(data) < base + 24 or struct.unpack_from("<I", data, base)[0] != MODULE_MAGIC:
        raise FormatError("GRUB 'mods' section has no module info header", offset=base)
    off, size = struct.unpack_from("<QQ", data, base + 8)
    pos, end = base + off, min(base + size, base + mods.raw_size, len(data))
    config = prefix = None
    memdisk: dict[str, bytes] = {}
    modules: set[str] = set()
    while pos + 8 <= end:
        typ, length = struct.unpack_from("<II", data, pos)
        if length < 8 or pos + length > end:
            raise FormatError(f"GRUB module header with size {length} runs past the 'mods' section", offset=pos)
        body = data[pos + 8:pos + length]
        if typ == OBJ_TYPE_CONFIG:
            config = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif typ == OBJ_TYPE_PREFIX:
            prefix = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif typ == OBJ_TYPE_MEMDISK:
            memdisk = fat_root_files(body)
        elif typ == OBJ_TYPE_ELF:
            name = _elf_modname(body)
            if name:
                modules.add(name)
        pos += length
    return GrubImage(config, prefix, memdisk, frozenset(modules))


def _elf_modname(elf: bytes) -> str | None:
    """The ``.modname`` section of a GRUB module (an ELF64 relocatable object)."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", elf, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 58)
    if shoff + shnum * shentsize > len(elf) or shstrndx >= shnum:
        return None

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return name, off, size
    _n, stroff, strsize = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        if elf[stroff + name:stroff + name + 9] == b".modname\0":
            return elf[off:off + size].split(b"\0", 1)[0].decode("ascii", "replace")
    return None


def fat_root_files(image: bytes) -> dict[str, bytes]:
    """Regular files in the root directory of a FAT12/16 image (GRUB's memdisk), 8.3 names lower-cased."""
    if len(image) < 512 or image[510:512] != b"\x55\xaa":
        return {}
    bps, spc, reserved, nfats, root_entries, total16, _media, fatsz = struct.unpack_from("<HBHBHHBH", image, 11)
    if not bps or not spc or not fatsz:
        return {}
    total = total16 or struct.unpack_from("<I", image, 32)[0]
    root_off = (reserved + nfats * fatsz) * bps
    data_off = root_off + ((root_entries * 32 + bps - 1) // bps) * bps
    clusters = (total * bps - data_off) // (spc * bps)
    fat12 = clusters < 4085
    fat = image[reserved * bps:(reserved + fatsz) * bps]

    def next_cluster(c: int) -> int:
        if fat12:
            v = struct.unpack_from("<H", fat, c + c // 2)[0]
            return v >> 4 if c & 1 else v & 0xFFF
        return struct.unpack_from("<H", fat, 2 * c)[0]

    last = 0xFF8 if fat12 else 0xFFF8
    out: dict[str, bytes] = {}
    for i in range(root_entries):
        e = image[root_off + 32 * i:root_off + 32 * i + 32]
        if len(e) < 32 or e[0] == 0:
            break
        if e[0] == 0xE5 or e[11] & 0x18 or e[11] == 0x0F:  # deleted, directory/volume, long name
            continue
        name = e[:8].decode("latin-1").rstrip().lower()
        ext = e[8:11].decode("latin-1").rstrip().lower()
        cluster, size = struct.unpack_from("<H", e, 26)[0], struct.unpack_from("<I", e, 28)[0]
        content, seen = b"", 0
        while 2 <= cluster < last and len(content) < size and seen < clusters:
            start = data_off + (cluster - 2) * spc * bps
            content += image[start:start + spc * bps]
            cluster, seen = next_cluster(cluster), seen + 1
        out[f"{name}.{ext}" if ext else name] = content[:size]
    return out


# --- the script interpreter --------------------------------------------------------------------

@dataclass(slots=True)
class _Word:
    text: str
    block: bool = False


@dataclass(slots=True)
class _Cmd:
    words: list[_Word]


@dataclass(slots=True)
class _If:
    branches: list[tuple[list, list]]  # (condition statements, body statements)
    otherwise: list | None


_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_?#@]+)\}|([A-Za-z_][A-Za-z0-9_]*|[0-9?#@]))")


_KEYWORDS = ("if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "function")


class _Lexer:
    """GRUB script (grub-core/script/yylex.l) for the predicted subset: words keep their raw text
    (quotes, $) until expansion; a ``{ … }`` argument is kept as raw source. The script becomes a
    token list of keywords and simple commands, then a recursive-descent parse."""

    def __init__(self, text: str, source: str) -> None:
        self.s, self.i, self.source = text, 0, source
        self.tokens: list = []
        while True:
            words = self._line()
            if words is None:
                break
            while words and words[0].text in _KEYWORDS and not words[0].block:
                self.tokens.append(words[0].text)
                words = words[1:]
            if words:
                self.tokens.append(_Cmd(words))
        self.pos = 0

    def statements(self, terminators: Sequence[str] = ()) -> tuple[list, str | None]:
        out: list = []
        while self.pos < len(self.tokens):
            tok = self.tokens[self.pos]
            self.pos += 1
            if isinstance(tok, _Cmd):
                out.append(tok)
            elif tok in terminators:
                return out, tok
            elif tok == "if":
                out.append(self._if())
            else:
                raise Unpredictable(f"{self.source}: '{tok}' is not predicted (events kept from the log)")
        if terminators:
            raise Unpredictable(f"{self.source}: unterminated block (expected {terminators[-1]})")
        return out, None

    def _if(self) -> _If:
        branches: list[tuple[list, list]] = []
        while True:
            cond, _ = self.statements(("then",))
            body, end = self.statements(("elif", "else", "fi"))
            branches.append((cond, body))
            if end == "elif":
                continue
            otherwise = self.statements(("fi",))[0] if end == "else" else None
            return _If(branches, otherwise)

    def _line(self) -> list[_Word] | None:
        """The next simple command's words (split at ';' or newline); None at the end."""
        s = self.s
        words: list[_Word] = []
        cur: list[str] = []
        if self.i >= len(s):
            return None
        while self.i < len(s):
            c = s[self.i]
            if c == "#" and not cur:
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
                continue
            if c in " \t":
                if cur:
                    words.append(_Word("".join(cur)))
                    cur = []
                self.i += 1
                continue
            if c in ";\n":
                self.i += 1
                break
            if c == "{" and not cur:
                words.append(_Word(self._block(), block=True))
                continue
            if c == "'":
                j = s.find("'", self.i + 1)
                if j < 0:
                    raise Unpredictable(f"{self.source}: unterminated quote")
                cur.append(s[self.i:j + 1])
                self.i = j + 1
                continue
            if c == '"':
                j = self.i + 1
                while j < len(s) and s[j] != '"':
                    j += 2 if s[j] == "\\" else 1
                if j >= len(s):
                    raise Unpredictable(f"{self.source}: unterminated quote")
                cur.append(s[self.i:j + 1])
                self.i = j + 1
                continue
            if c == "\\" and self.i + 1 < len(s):
                if s[self.i + 1] == "\n":
                    self.i += 2
                    continue
                cur.append(s[self.i:self.i + 2])
                self.i += 2
                continue
            cur.append(c)
            self.i += 1
        if cur:
            words.append(_Word("".join(cur)))
        return words

    def _block(self) -> str:
        s, start, depth = self.s, self.i, 0
        while self.i < len(s):
            c = s[self.i]
            if c == "'" or c == '"':
                j = s.find(c, self.i + 1)
                self.i = (j if j >= 0 else len(s) - 1) + 1
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    self.i += 1
                    return s[start:self.i]
            self.i += 1
        raise Unpredictable(f"{self.source}: unterminated '{{' block")


def _expand(word: _Word, env: Mapping[str, str]) -> str:
    if word.block:
        return word.text
    out: list[str] = []
    s, i = word.text, 0

    def var(m: re.Match) -> str:
        return env.get(m.group(1) or m.group(2), "")

    while i < len(s):
        c = s[i]
        if c == "'":
            j = s.index("'", i + 1)
            out.append(s[i + 1:j])
            i = j + 1
        elif c == '"':
            j = i + 1
            buf = []
            while s[j] != '"':
                if s[j] == "\\" and s[j + 1] in '"\\$':
                    buf.append(s[j + 1])
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            out.append(_VAR.sub(var, "".join(buf)))
            i = j + 1
        elif c == "\\":
            out.append(s[i + 1])
            i += 2
        elif c == "$":
            m = _VAR.match(s, i)
            if m:
                out.append(var(m))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(slots=True)
class BootTrace:
    """The measurements of one GRUB run: PCR 8 strings and PCR 9 files in order, plus the kernel
    GRUB loaded (``kernel``: path as named, ``cmdline``: what the kernel gets)."""

    events: list[Measurement] = field(default_factory=list)
    kernel: str | None = None
    kernel_args: str = ""
    initrds: list[str] = field(default_factory=list)
    entries: list[tuple[str, str]] = field(default_factory=list)  # (title, body)

    @property
    def cmdline(self) -> str:
        return f"BOOT_IMAGE={self.kernel} {self.kernel_args}".rstrip() if self.kernel else ""


#: The files GRUB can see, by the path a script names them (``(hd0)/EFI/debian/grub.cfg``,
#: ``/boot/vmlinuz``) → content or precomputed digests; directories exist when a file is below them.
FileSet = Mapping[str, "bytes | Mapping[HashAlg, bytes]"]


class _Interp:
    def __init__(self, files: FileSet, banks: Sequence[HashAlg], env: dict[str, str],
                 modules: frozenset[str] | None = None) -> None:
        self.files, self.banks, self.env, self.modules = files, banks, env, modules
        self.trace = BootTrace()
        self.depth = 0

    def _file(self, path: str) -> bytes | Mapping[HashAlg, bytes] | None:
        return self.files.get(path)

    def _exists(self, path: str) -> bool:
        if not path:
            return False
        below = path.rstrip("/") + "/"
        return path in self.files or any(k.startswith(below) for k in self.files)

    def run(self, statements: list) -> int:
        status = 0
        for st in statements:
            if isinstance(st, _If):
                status = self._if(st)
            else:
                status = self._cmd(st)
        return status

    def _if(self, st: _If) -> int:
        for cond, body in st.branches:
            if self.run(cond) == 0:
                return self.run(body)
        return self.run(st.otherwise) if st.otherwise is not None else 0

    def _cmd(self, st: _Cmd) -> int:
        argv = [_expand(w, self.env) for w in st.words]
        name = argv[0]
        if name == "!" and len(argv) > 1:
            return 1 if self._cmd(_Cmd(st.words[1:])) == 0 else 0
        if name in UNPREDICTABLE_COMMANDS:
            raise Unpredictable(f"'{name}' depends on the machine (kept from the reference log)")
        self.trace.events.append(string_measurement(" ".join(argv), self.banks))
        if "=" in name and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", name) and len(argv) == 1:
            k, _, v = name.partition("=")
            self.env[k] = v
            return 0
        args = argv[1:]
        if name == "set":
            for a in args:
                k, _, v = a.partition("=")
                self.env[k] = v
            return 0
        if name == "unset":
            for a in args:
                self.env.pop(a, None)
            return 0
        if name in ("[", "test"):
            if name == "[":
                if not args or args[-1] != "]":
                    raise Unpredictable("'[' without ']'")
                args = args[:-1]
            return 0 if self._test(args) else 1
        if name in ("source", "configfile", ".") and args:
            self._source(args[0])
            return 0
        if name == "menuentry":
            if not args or not st.words[-1].block:
                raise Unpredictable("menuentry without a { … } block")
            self.trace.entries.append((args[0], st.words[-1].text))
            return 0
        if name == "linux":
            if not args:
                raise Unpredictable("linux without a kernel path")
            self._read_file(args[0], "kernel")
            self.trace.kernel, self.trace.kernel_args = args[0], " ".join(args[1:])
            self.trace.events.append(string_measurement(" ".join(args), self.banks, prefix="kernel_cmdline"))
            return 0
        if name == "initrd":
            for a in args:
                self._read_file(a, "initrd")
                self.trace.initrds.append(a)
            return 0
        if name == "insmod":
            missing = [a for a in args if self.modules is None or a not in self.modules]
            if missing:
                raise Unpredictable(f"insmod {missing[0]}: not built into the GRUB image, so GRUB reads "
                                    "(and measures) a module file")
            return 0
        if name in ("export", "echo", "terminal_output", "terminal_input", "serial",
                    "set_gfxpayload", "gfxmode", "load_video", "font", "true", "setparams", "timeout"):
            return 0
        if name == "false":
            return 1
        raise Unpredictable(f"GRUB command '{name}' is not predicted (kept from the reference log)")

    def _read_file(self, path: str, what: str) -> bytes | Mapping[HashAlg, bytes]:
        content = self._file(path)
        if content is None:
            raise Unpredictable(f"{what} {path} is not among the release's files")
        self.trace.events.append(file_measurement(path, content, self.banks))
        return content

    def _source(self, path: str) -> None:
        content = self._read_file(path, "config file")
        if not isinstance(content, (bytes, bytearray)):
            raise Unpredictable(f"{path}: a sourced config must be given as a file, not digests")
        self.depth += 1
        if self.depth > 8:
            raise Unpredictable("config files source each other more than 8 deep")
        self.run(parse_script(bytes(content).decode("utf-8", "replace"), source=path))
        self.depth -= 1

    def _test(self, args: list[str]) -> bool:
        # GRUB test: left-to-right with -a binding tighter than -o (commands/test.c)
        for i, a in enumerate(args):
            if a == "-o":
                return self._test(args[:i]) or self._test(args[i + 1:])
        for i, a in enumerate(args):
            if a == "-a":
                return self._test(args[:i]) and self._test(args[i + 1:])
        if args and args[0] == "!":
            return not self._test(args[1:])
        if not args:
            return False
        if len(args) == 1:
            return args[0] != ""
        if len(args) == 2 and args[0] in ("-z", "-n"):
            return (args[1] == "") == (args[0] == "-z")
        if len(args) == 2 and args[0] in ("-e", "-f", "-d"):
            return self._exists(args[1]) if args[0] != "-f" else self._file(args[1]) is not None
        if len(args) == 3 and args[1] in ("=", "==", "!="):
            return (args[0] == args[2]) == (args[1] != "!=")
        raise Unpredictable(f"test {' '.join(args)!r} is not predicted")

    def boot_default(self) -> None:
        entries = self.trace.entries
        if not entries:
            raise Unpredictable("the config defines no menuentry to boot")
        default = self.env.get("default", "0")
        if default.isdigit():
            if int(default) >= len(entries):
                raise Unpredictable(f"default={default} but the config has {len(entries)} entries")
            title, body = entries[int(default)]
        else:
            match = [e for e in entries if e[0] == default]
            if not match:
                raise Unpredictable(f"default={default!r} names no menuentry title")
            title, body = match[0]
        self.trace.events.append(string_measurement(f"setparams {title}", self.banks))
        self.run(parse_script(body[1:-1], source=f"menuentry {title!r}"))


def parse_script(text: str, *, source: str = "grub.cfg") -> list:
    stmts, _ = _Lexer(text, source).statements()
    return stmts


def run_script(text: str, files: FileSet, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
               env: Mapping[str, str] | None = None, boot: bool = True, source: str = "grub.cfg",
               modules: frozenset[str] | None = None) -> BootTrace:
    """Interpret ``text`` as GRUB would (the predicted subset) and return its measurements.

    ``files`` maps a path as the script names it (``(hd0)/EFI/debian/grub.cfg``, ``/boot/vmlinuz``)
    to its content or precomputed digests (:data:`FileSet`).
    With ``boot``, the default menu entry is then booted (``setparams`` + its commands).
    ``modules``: the modules built into the image (``insmod`` of another one reads a file).
    Raises :class:`Unpredictable` for constructs outside :data:`PREDICTED_CONSTRUCTS`.
    """
    interp = _Interp(files, banks, dict(env or {}), modules)
    interp.run(parse_script(text, source=source))
    if boot:
        interp.boot_default()
    return interp.trace


def debian_signed_trace(grub_image: bytes | GrubImage, files: FileSet, banks: Sequence[HashAlg] = DEFAULT_BANKS,
                        *, device: str = "hd0") -> BootTrace:
    """Debian/Ubuntu signed GRUB: run its memdisk ``grub.cfg`` with ``prefix=(device)<baked prefix>``,
    ``root=device`` and ``cmdpath`` (the ESP directory GRUB was loaded from is not needed when
    ``$prefix`` exists), then boot the default entry."""
    img = grub_image if isinstance(grub_image, GrubImage) else read_grub_image(grub_image)
    cfg = img.memdisk.get("grub.cfg")
    if cfg is None:
        if img.config is None:
            raise Unpredictable("the GRUB image embeds no config")
        raise Unpredictable(f"the GRUB image's embedded config is {img.config!r} without a memdisk grub.cfg")
    prefix = f"({device}){img.prefix or ''}"
    env = {"prefix": prefix, "root": device, "cmdpath": prefix}
    return run_script(cfg.decode("utf-8", "replace"), files, banks, env=env, source="(memdisk)/grub.cfg",
                      modules=img.modules)


# --- substitution into a reference log's GRUB events -------------------------------------------

def substitute_strings(texts: Sequence[tuple[int, str]], *, kernel: str | None = None, args: str | None = None,
                       initrd: str | None = None) -> list[tuple[int, str]]:
    """The reference log's PCR 8/9 texts ``[(pcr, text)]`` with a new kernel path, argument string
    and initrd path put in: ``grub_cmd: linux``, ``kernel_cmdline:``, ``grub_cmd: initrd``, the
    menuentry block that contains them, and the PCR 9 file events of the old kernel/initrd paths.

    Everything else (search, load_env, conditionals …) stays exactly as logged.
    """
    old_kernel = old_args = old_initrd = None
    for pcr, t in texts:
        if pcr == PCR_GRUB_STRINGS and t.startswith("grub_cmd: linux "):
            parts = t[len("grub_cmd: linux "):].split(" ", 1)
            old_kernel, old_args = parts[0], parts[1] if len(parts) > 1 else ""
        elif pcr == PCR_GRUB_STRINGS and t.startswith("grub_cmd: initrd "):
            old_initrd = t[len("grub_cmd: initrd "):]
    if old_kernel is None:
        raise UsageError("the reference log has no GRUB 'linux' command on PCR 8",
                         hint="is this a GRUB boot? (grub_cmd: linux …)")
    new_kernel = kernel or old_kernel
    new_args = old_args if args is None else args
    new_initrd = old_initrd if initrd is None else initrd
    old_line = f"linux {old_kernel} {old_args}".rstrip()
    new_line = f"linux {new_kernel} {new_args}".rstrip()
    out = []
    for pcr, t in texts:
        if pcr == PCR_GRUB_STRINGS:
            if t == f"grub_cmd: {old_line}":
                t = f"grub_cmd: {new_line}"
            elif t == f"kernel_cmdline: {old_kernel} {old_args}".rstrip():
                t = f"kernel_cmdline: {new_kernel} {new_args}".rstrip()
            elif old_initrd is not None and t == f"grub_cmd: initrd {old_initrd}":
                t = f"grub_cmd: initrd {new_initrd}"
            elif t.startswith("grub_cmd: menuentry ") and old_line in t:
                t = t.replace(old_line, new_line)
                if old_initrd is not None:
                    t = t.replace(f"initrd {old_initrd}", f"initrd {new_initrd}")
        out.append((pcr, t))
    return out
