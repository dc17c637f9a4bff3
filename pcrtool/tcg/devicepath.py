"""EFI device paths: split into nodes and render as UEFI text (UEFI 2.10 §10.3 and §10.6,
"Device Path Text Representation"; the same spellings as EDK2's DevicePathToText).

A malformed node (length < 4 or past the buffer) stops decoding; what was decoded is kept and the
remainder is reported, never an exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.tcg.guid import guid_from_bytes

END_TYPE = 0x7F
END_ENTIRE = 0xFF
END_INSTANCE = 0x01


@dataclass(frozen=True, slots=True)
class DevicePathNode:
    type: int
    subtype: int
    data: bytes

    @property
    def text(self) -> str:
        return node_to_text(self)

    def to_bytes(self) -> bytes:
        return struct.pack("<BBH", self.type, self.subtype, len(self.data) + 4) + self.data


@dataclass(frozen=True, slots=True)
class DevicePath:
    nodes: tuple[DevicePathNode, ...]
    trailing: bytes = b""     # bytes from a malformed node on, not decoded
    after_end: bytes = b""    # bytes after the end-of-path node (within the stated length)

    @property
    def text(self) -> str:
        parts: list[str] = []
        out: list[str] = []
        for node in self.nodes:
            if node.type == END_TYPE:
                if node.subtype == END_INSTANCE:
                    out.append("/".join(parts))
                    parts = []
                    continue
                break
            parts.append(node_to_text(node))
        out.append("/".join(parts))
        text = ",".join(p for p in out if p) if len(out) > 1 else out[0]
        if self.trailing:
            text += f"/(malformed:{self.trailing[:16].hex()})"
        return text

    @property
    def file_path(self) -> str | None:
        """The last file-path node's text (``\\EFI\\BOOT\\BOOTX64.EFI``), if any."""
        files = [n for n in self.nodes if n.type == 4 and n.subtype == 4]
        return _file_path(files[-1].data) if files else None

    def __str__(self) -> str:
        return self.text

    def to_bytes(self) -> bytes:
        return b"".join(n.to_bytes() for n in self.nodes) + self.trailing + self.after_end


def parse_device_path(data: bytes) -> DevicePath:
    """Split ``data`` into nodes; stop at the end-of-path node or at a malformed node."""
    nodes: list[DevicePathNode] = []
    pos = 0
    end = len(data)
    while pos + 4 <= end:
        typ, sub, length = struct.unpack_from("<BBH", data, pos)
        if length < 4 or pos + length > end:
            return DevicePath(tuple(nodes), bytes(data[pos:]))
        nodes.append(DevicePathNode(typ, sub, bytes(data[pos + 4:pos + length])))
        pos += length
        if typ == END_TYPE and sub == END_ENTIRE:
            return DevicePath(tuple(nodes), b"", bytes(data[pos:]))
    return DevicePath(tuple(nodes), bytes(data[pos:]))


def build_device_path(nodes: list[DevicePathNode]) -> bytes:
    out = b"".join(n.to_bytes() for n in nodes)
    return out + struct.pack("<BBH", END_TYPE, END_ENTIRE, 4)


def eisa_id_to_text(value: int) -> str:
    """Compressed EISA id (UEFI §10.3.3): ``0x0a0341d0`` → ``PNP0A03``."""
    vendor = value & 0xFFFF
    letters = "".join(chr(((vendor >> shift) & 0x1F) + 0x40) for shift in (10, 5, 0))
    return f"{letters}{value >> 16:04X}"


def _guid(data: bytes, at: int = 0) -> str:
    return str(guid_from_bytes(data[at:at + 16]))


def _file_path(data: bytes) -> str:
    text = bytes(data).decode("utf-16-le", "replace")
    return text.split("\0", 1)[0]


def _generic(node: DevicePathNode) -> str:
    return f"Path({node.type},{node.subtype},{node.data.hex().upper()})"


def _u(data: bytes, fmt: str, at: int = 0):
    return struct.unpack_from("<" + fmt, data, at)


def node_to_text(node: DevicePathNode) -> str:
    try:
        render = _RENDER.get((node.type, node.subtype))
        if render is not None:
            return render(node.data)
    except (struct.error, IndexError, ValueError):
        pass
    return _generic(node)


def _pci(d: bytes) -> str:
    function, device = d[0], d[1]
    return f"Pci(0x{device:x},0x{function:x})"


def _acpi(d: bytes) -> str:
    hid, uid = _u(d, "II")
    if hid & 0xFFFF == 0x41D0:
        if hid >> 16 == 0x0A03:
            return f"PciRoot(0x{uid:x})"
        if hid >> 16 == 0x0A08:
            return f"PcieRoot(0x{uid:x})"
        if hid >> 16 == 0x0604:
            return f"Floppy(0x{uid:x})"
    return f"Acpi({eisa_id_to_text(hid)},0x{uid:x})"


def _acpi_adr(d: bytes) -> str:
    adrs = [f"0x{v:x}" for v in _u(d, f"{len(d) // 4}I")]
    return f"AcpiAdr({','.join(adrs)})"


def _hex_fields(name: str, fmt: str, skip: int = 0):
    """A node whose text is ``name(0x…,…)``: its little-endian ``fmt`` fields in hex, the first
    ``skip`` left out (UEFI 2.10 §10.6.1: Ctrl, Scsi, USB, Sata, Unit, MemoryMapped, CDROM, Offset)."""
    def render(d: bytes) -> str:
        return f"{name}({','.join(f'0x{v:x}' for v in _u(d, fmt)[skip:])})"
    return render


def _guid_node(name: str):
    """A node whose text is ``name(GUID)`` (Media, FvFile, Fv)."""
    def render(d: bytes) -> str:
        return f"{name}({_guid(d)})"
    return render


def _vendor(prefix: str):
    def render(d: bytes) -> str:
        rest = d[16:]
        return f"{prefix}({_guid(d)}{',' + rest.hex().upper() if rest else ''})"
    return render


def _atapi(d: bytes) -> str:
    primary, slave, lun = d[0], d[1], _u(d, "H", 2)[0]
    return f"Ata({'Secondary' if primary else 'Primary'},{'Slave' if slave else 'Master'},0x{lun:x})"


def _nvme(d: bytes) -> str:
    nsid = _u(d, "I")[0]
    eui = "-".join(f"{b:02X}" for b in reversed(d[4:12]))
    return f"NVMe(0x{nsid:x},{eui})"


def _mac(d: bytes) -> str:
    iftype = d[32]
    size = 6 if iftype in (0, 1) else 32
    return f"MAC({d[:size].hex()},0x{iftype:x})"


def _ipv4(d: bytes) -> str:
    """IPv4(remote,protocol,Static|DHCP,local[,gateway,mask]) — gateway/mask since UEFI 2.2."""
    local = ".".join(map(str, d[0:4]))
    remote = ".".join(map(str, d[4:8]))
    _lport, _rport, proto = _u(d, "HHH", 8)
    kind = "Static" if d[14] else "DHCP"
    proto_text = {6: "TCP", 17: "UDP"}.get(proto, f"0x{proto:x}")
    text = f"IPv4({remote},{proto_text},{kind},{local}"
    if len(d) >= 23:
        text += f",{'.'.join(map(str, d[15:19]))},{'.'.join(map(str, d[19:23]))}"
    return text + ")"


def _ipv6(d: bytes) -> str:
    import ipaddress
    local = ipaddress.IPv6Address(bytes(d[0:16]))
    remote = ipaddress.IPv6Address(bytes(d[16:32]))
    proto = _u(d, "H", 36)[0]
    proto_text = {6: "TCP", 17: "UDP"}.get(proto, f"0x{proto:x}")
    origin = {0: "Static", 1: "StatelessAutoConfigure", 2: "StatefulAutoConfigure"}.get(d[38], "Static")
    return f"IPv6({remote},{proto_text},{origin},{local})"


def _uri(d: bytes) -> str:
    return f"Uri({bytes(d).decode('ascii', 'replace')})"


def _hd(d: bytes) -> str:
    number, start, size = _u(d, "IQQ")
    signature = d[20:36]
    mbr_type, sig_type = d[36], d[37]
    if sig_type == 2:
        sig = f"GPT,{_guid(signature)}"
    elif sig_type == 1:
        sig = f"MBR,0x{_u(signature, 'I')[0]:08x}"
    else:
        sig = f"{sig_type},0"
    del mbr_type
    return f"HD({number},{sig},0x{start:x},0x{size:x})"


def _ramdisk(d: bytes) -> str:
    start, end = _u(d, "QQ")
    return f"RamDisk(0x{start:x},0x{end:x},{_u(d, 'H', 32)[0]},{_guid(d, 16)})"


def _bbs(d: bytes) -> str:
    dev_type, status = _u(d, "HH")
    desc = bytes(d[4:]).split(b"\0", 1)[0].decode("latin-1")
    return f"BBS(0x{dev_type:x},{desc},0x{status:x})"


_RENDER = {
    (1, 1): _pci, (1, 3): _hex_fields("MemoryMapped", "IQQ"), (1, 4): _vendor("VenHw"),
    (1, 5): _hex_fields("Ctrl", "I"),
    (2, 1): _acpi, (2, 3): _acpi_adr,
    (3, 1): _atapi, (3, 2): _hex_fields("Scsi", "HH"), (3, 5): _hex_fields("USB", "BB"),
    (3, 10): _vendor("VenMsg"), (3, 11): _mac, (3, 12): _ipv4, (3, 13): _ipv6,
    (3, 17): _hex_fields("Unit", "B"), (3, 18): _hex_fields("Sata", "HHH"), (3, 23): _nvme, (3, 24): _uri,
    (4, 1): _hd, (4, 2): _hex_fields("CDROM", "IQQ"), (4, 3): _vendor("VenMedia"), (4, 4): _file_path,
    (4, 5): _guid_node("Media"), (4, 6): _guid_node("FvFile"), (4, 7): _guid_node("Fv"),
    (4, 8): _hex_fields("Offset", "IQQ", 1), (4, 9): _ramdisk,
    (5, 1): _bbs,
}


_BBH = struct.Struct("<BBH")


def device_path_text_and_nodes(data: bytes) -> tuple[str, list[tuple[int, int]]]:
    """``(parse_device_path(data).text, [(node.type, node.subtype), …])`` without building the
    node objects (the hot path of image-load and Boot#### events); same rules as those two."""
    unpack = _BBH.unpack_from
    render_table = _RENDER
    parts: list[str] = []
    out: list[str] = []
    nodes: list[tuple[int, int]] = []
    pos = 0
    end = len(data)
    stopped = False          # an end node other than end-instance ends the text (not the parse)
    trailing = b""
    while True:
        if pos + 4 > end:
            trailing = bytes(data[pos:])
            break
        typ, sub, length = unpack(data, pos)
        if length < 4 or pos + length > end:
            trailing = bytes(data[pos:])
            break
        nodes.append((typ, sub))
        if not stopped:
            if typ == END_TYPE:
                if sub == END_INSTANCE:
                    out.append("/".join(parts))
                    parts = []
                else:
                    stopped = True
            else:
                body = bytes(data[pos + 4:pos + length])
                render = render_table.get((typ, sub))
                text = None
                if render is not None:
                    try:
                        text = render(body)
                    except (struct.error, IndexError, ValueError):
                        text = None
                parts.append(text if text is not None else f"Path({typ},{sub},{body.hex().upper()})")
        pos += length
        if typ == END_TYPE and sub == END_ENTIRE:
            break
    out.append("/".join(parts))
    text = ",".join(p for p in out if p) if len(out) > 1 else out[0]
    if trailing:
        text += f"/(malformed:{trailing[:16].hex()})"
    return text, nodes
