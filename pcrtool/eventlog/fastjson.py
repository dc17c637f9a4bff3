"""Fast compact JSON of a range of records (the hot path of ``eventlog show --json=short``).

``iter_log_json`` in ``pcrtool.eventlog.export`` is the reference: it builds ``Event`` objects,
decodes them and runs ``json`` over each decoded dict. This module writes the *same bytes*
(tests compare the two over the corpus and over mutated logs) with less work per record:

- records are read straight from the buffer at offsets ``EventLogStream.record_starts()``
  already validated, so a range of records can be rendered by any process that has the buffer;
- the header fields are formatted from precomputed fragments (type name/value per event type,
  bank name per algorithm), data as one ``bytes.hex()``;
- the decoded values of the frequent families (EV_IPL strings, separators, firmware blobs, UEFI
  variables with signature lists / load options / booleans) are written as JSON text directly,
  with the C string escaper ``json`` itself uses; everything else goes through ``to_json()`` and
  ``json``. Decoding itself is the typed decoders' (``decode_event``): nothing is cached by payload.
"""

from __future__ import annotations

import json
import struct
from json.encoder import encode_basestring_ascii as _esc   # the C escaper of json.dumps

from pcrtool.eventlog.decode import decode_event
from pcrtool.eventlog.decode.ipl import SHIM_NAMES
from pcrtool.errors import FormatError
from pcrtool.eventlog.families import GRUB_PREFIXES
from pcrtool.eventlog.decode.variables import (_BOOT_ENTRY, SIGNATURE_DB_NAMES, parse_variable_data,
                                               walk_signature_lists, x509_info)
from pcrtool.eventlog.model import Event, EventLog, LogFormat
from pcrtool.eventlog.parse import event_from_record, read_records
from pcrtool.model import HashAlg
from pcrtool.tcg.constants import EventType
from pcrtool.tcg.devicepath import device_path_text_and_nodes

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_EVENT_TYPES = {t.value: t for t in EventType}


def _json_value(value) -> str:
    """Scalars as ``json`` writes them (str, None, bool, int); anything else through ``json``."""
    t = type(value)
    if t is str:
        return _esc(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return int.__repr__(value)
    return _dumps(value)


class RecordRenderer:
    """Renders records ``lo <= i < hi`` of a validated log buffer as the comma-joined JSON texts
    of their ``events`` entries (exactly ``iter_log_json``'s)."""

    def __init__(self, buf, log: EventLog, *, decode: bool = True) -> None:
        self.buf = buf
        self.log = log
        self.decode = decode
        self.agile = log.format == LogFormat.CRYPTO_AGILE
        self._type_fragments: dict[int, tuple[EventType, str]] = {}
        self._serializers = _serializers()
        self.hot = dict(_hot_paths())
        image_load = _image_load_fast(log.uintn_bytes)
        for t in (EventType.EV_EFI_BOOT_SERVICES_APPLICATION, EventType.EV_EFI_BOOT_SERVICES_DRIVER,
                  EventType.EV_EFI_RUNTIME_SERVICES_DRIVER):
            self.hot[int(t)] = image_load

    def _type(self, etype: int) -> tuple[EventType, str]:
        entry = self._type_fragments.get(etype)
        if entry is None:
            t = _EVENT_TYPES.get(etype)
            if t is None:
                t = EventType(etype)
            entry = self._type_fragments[etype] = (t, f'"type":"{t._name_}","typeValue":{int(t)}')
        return entry

    def decoded_text(self, event: Event) -> str:
        value = decode_event(event, self.log)
        serialize = self._serializers.get(type(value))
        if serialize is not None:
            return serialize(value)
        return _dumps(value.to_json())

    def render(self, starts, lo: int, hi: int, pcrs=None) -> str:
        """JSON texts of records lo..hi-1 joined by commas ("" when none is selected)."""
        buf = self.buf
        parts: list[str] = []
        append = parts.append
        decode = self.decode
        type_of = self._type
        decoded_text = self.decoded_text
        hot = self.hot
        tfrags = self._type_fragments
        dfrag = _DIGEST_KEYS
        header = self.agile          # record 0 of a crypto-agile log is the Spec ID header
        for record in read_records(buf, self.log, starts, lo, hi):
            i, pos, pcr, etype, digests, unknown, p, size = record
            if pcrs is not None and pcr not in pcrs:
                continue
            entry = tfrags.get(etype)
            if entry is None:
                entry = type_of(etype)
            tfrag = entry[1]
            data = buf[p:p + size]
            if decode:
                fast = hot.get(etype) if (i or not header) else None
                dec = None
                if fast is not None:
                    try:
                        dec = fast(pcr, data)
                    except Exception:   # noqa: BLE001 - the decoder's own path reports it
                        dec = None
                if dec is None:
                    dec = decoded_text(event_from_record(buf, record))
                tail = ',"decoded":' + dec + "}"
            else:
                tail = "}"
            if unknown:
                tail = ',"unknownDigests":' + _dumps({f"0x{a:04x}": d.hex() for a, d in unknown.items()}) + tail
            dtext = ",".join([f'{dfrag[a]}{d.hex()}"' for a, d in digests.items()])
            # one copy of the (possibly large) data hex into the record's text
            append(f'{{"index":{i},"offset":{pos},"pcr":{pcr},{tfrag},"digests":{{{dtext}}},'
                   f'"size":{size},"data":"{data.hex()}"{tail}')
        return ",".join(parts)


_BANK_NAMES = {alg: alg.bank_name for alg in HashAlg}
_DIGEST_KEYS = {alg: f'"{alg.bank_name}":"' for alg in HashAlg}


# -- decoded values as JSON text: each equals _dumps(value.to_json()) for its class ---------------

def _ipl(v) -> str:
    prefix = v.prefix
    val = v.value
    return (f'{{"kind":"ipl","source":{_esc(v.source)},"text":{_esc(v.text)},'
            f'"prefix":{"null" if prefix is None else _esc(prefix)},'
            f'"value":{"null" if val is None else _esc(val)},"encoding":{_esc(v.encoding)}}}')


def _separator(v) -> str:
    value = v.value
    return f'{{"kind":"separator","value":{"null" if value is None else int.__repr__(value)},"data":"{v.data.hex()}"}}'


def _blob(v) -> str:
    d = v.description
    return (f'{{"kind":"firmware-blob","base":{int.__repr__(v.base)},"length":{int.__repr__(v.length)},'
            f'"description":{"null" if d is None else _esc(d)}}}')


def _x509(c) -> str:
    return (f'{{"subject":{_esc(c.subject)},"issuer":{_esc(c.issuer)},"serial":{_esc(c.serial)},'
            f'"sha256Fingerprint":{_esc(c.sha256_fingerprint)},"notBefore":{_esc(c.not_before)},'
            f'"notAfter":{_esc(c.not_after)}}}')


def _signature_entry(e) -> str:
    return _entry_text(e.owner, ',"type":' + _esc(e.type), e.certificate, e.data)


def _entry_text(owner: str, type_fragment: str, certificate, data: bytes) -> str:
    """``SignatureEntry.to_json`` as text (``type_fragment`` is ``,"type":"…"``)."""
    if certificate is not None:
        return f'{{"owner":{_esc(owner)}{type_fragment},"x509":{_x509(certificate)}}}'
    return f'{{"owner":{_esc(owner)}{type_fragment},"data":"{data.hex()}"}}'


def _signature_list(sl) -> str:
    return (f'{{"signatureType":{_esc(sl.signature_type)},"type":{_esc(sl.type_name)},'
            f'"header":"{sl.header.hex()}","entries":[{",".join([_signature_entry(e) for e in sl.entries])}]}}')


def _load_option(o) -> str:
    return (f'{{"attributes":{int.__repr__(o.attributes)},"active":{"true" if o.active else "false"},'
            f'"description":{_esc(o.description)},"devicePath":{_esc(o.device_path.text)},'
            f'"optionalData":"{o.optional_data.hex()}"}}')


def _variable(v) -> str:
    from pcrtool.eventlog.decode.variables import LoadOption, SignatureEntry, SignatureList

    value = v.value
    t = type(value)
    if t is tuple:
        items = []
        for x in value:
            tx = type(x)
            if tx is SignatureList:
                items.append(_signature_list(x))
            elif tx is SignatureEntry:
                items.append(_signature_entry(x))
            elif hasattr(x, "to_json"):
                items.append(_dumps(x.to_json()))
            else:
                items.append(_json_value(x))
        vtext = "[" + ",".join(items) + "]"
    elif t is LoadOption:
        vtext = _load_option(value)
    elif t is SignatureEntry:
        vtext = _signature_entry(value)
    elif hasattr(value, "to_json"):
        vtext = _dumps(value.to_json())
    elif t is bytes:
        vtext = f'"{value.hex()}"'
    else:
        vtext = _json_value(value)
    text = (f'{{"kind":"uefi-variable","guid":{_esc(v.guid)},"name":{_esc(v.name)},'
            f'"dataLength":{len(v.data)},"value":{vtext}')
    if v.trailing:
        text += f',"trailing":"{v.trailing.hex()}"'
    return text + "}"


_SERIALIZERS: dict | None = None


def _serializers() -> dict:
    global _SERIALIZERS
    if _SERIALIZERS is None:
        from pcrtool.eventlog.decode.firmware import Blob, Separator
        from pcrtool.eventlog.decode.ipl import IplString
        from pcrtool.eventlog.decode.variables import Variable

        _SERIALIZERS = {IplString: _ipl, Separator: _separator, Blob: _blob, Variable: _variable}
    return _SERIALIZERS


# -- hot event families straight from the payload to JSON text ------------------------------------
# Each returns the text ``_dumps(decode_event(event).to_json())`` would give, or None when the
# payload takes a less common branch of the decoder (the caller then runs the decoder itself).

def _ipl_fast(pcr: int, data: bytes) -> str | None:
    """``decode_ipl`` for the common case: a printable ASCII string not on PCR 11-13."""
    if pcr in (11, 12, 13):
        return None
    raw = data[:-1] if data.endswith(b"\0") else data
    if not raw or not raw.isascii():
        return None
    text = raw.decode("ascii")
    if not text.isprintable():
        return None
    if pcr == 14 or text in SHIM_NAMES:
        return f'{{"kind":"ipl","source":"shim","text":{_esc(text)},"prefix":null,"value":null,"encoding":"ascii"}}'
    prefix, sep, value = text.partition(" ")
    if sep and prefix.rstrip(":") in GRUB_PREFIXES:
        return (f'{{"kind":"ipl","source":"grub-command","text":{_esc(text)},'
                f'"prefix":{_esc(prefix.rstrip(":"))},"value":{_esc(value)},"encoding":"ascii"}}')
    if prefix.endswith(":") or text.startswith("grub_"):
        source = "grub-command"
    elif pcr == 9 or text.startswith("("):
        source = "grub-file"
    else:
        source = "string"
    return f'{{"kind":"ipl","source":"{source}","text":{_esc(text)},"prefix":null,"value":null,"encoding":"ascii"}}'


def _signature_lists_fast(data: bytes) -> str | None:
    """``parse_signature_lists`` + ``SignatureList.to_json`` as text; None where it would raise."""
    lists = []
    try:
        for _pos, sig_type, header, raw_entries in walk_signature_lists(data):
            type_name = _SIGNATURE_TYPE_NAMES.get(sig_type, sig_type)
            entry_head = ',"type":' + _esc(type_name)
            is_x509 = sig_type == _X509_TEXT
            entries = [_entry_text(owner, entry_head, x509_info(payload) if is_x509 else None, payload)
                       for owner, payload in raw_entries]
            lists.append(f'{{"signatureType":"{sig_type}","type":{_esc(type_name)},'
                         f'"header":"{header.hex()}","entries":[{",".join(entries)}]}}')
    except FormatError:
        return None
    return "[" + ",".join(lists) + "]"


def _variable_fast(pcr: int, data: bytes) -> str | None:
    """UEFI_VARIABLE_DATA of a signature database (PK/KEK/db/dbx/MokList…), not authority."""
    try:
        guid, name, value, trailing = parse_variable_data(data)
    except Exception:   # noqa: BLE001 - the decoder itself reports it (Undecodable)
        return None
    if name in SIGNATURE_DB_NAMES:
        vtext = _signature_lists_fast(value) if value else None
    elif _BOOT_ENTRY.match(name) and name not in _BOOLEAN_VARIABLES:
        vtext = _load_option_fast(value)
    else:
        return None
    if vtext is None:
        return None
    text = (f'{{"kind":"uefi-variable","guid":{_esc(guid)},"name":{_esc(name)},'
            f'"dataLength":{len(value)},"value":{vtext}')
    if trailing:
        text += f',"trailing":"{trailing.hex()}"'
    return text + "}"


def _load_option_fast(data: bytes) -> str | None:
    """``parse_load_option`` + ``LoadOption.to_json`` as text; None where it would raise."""
    if len(data) < 6:
        return None
    attributes, path_len = _IH.unpack_from(data, 0)
    pos = data.find(b"\0\0", 6)
    while pos >= 0 and pos % 2:
        pos = data.find(b"\0\0", pos + 1)
    if pos < 0:
        return None
    description = data[6:pos].decode("utf-16-le", "replace")
    pos += 2
    if path_len > len(data) - pos:
        return None
    path_text, _nodes = device_path_text_and_nodes(data[pos:pos + path_len])
    return (f'{{"attributes":{attributes},"active":{"true" if attributes & 1 else "false"},'
            f'"description":{_esc(description)},"devicePath":{_esc(path_text)},'
            f'"optionalData":"{data[pos + path_len:].hex()}"}}')


def _image_load_fast(width: int):
    header = struct.Struct("<QIII" if width == 4 else "<QQQQ")
    size = header.size

    def image_load(pcr: int, data: bytes) -> str | None:
        """``decode_image_load`` + ``ImageLoad.to_json`` as text; None where it would raise."""
        if len(data) < size:
            return None
        location, length, link, path_len = header.unpack_from(data, 0)
        if path_len > len(data) - size:
            return None
        text, nodes = device_path_text_and_nodes(data[size:size + path_len])
        node_text = ",".join([f"[{t},{s}]" for t, s in nodes])
        out = (f'{{"kind":"image-load","imageLocationInMemory":{location},"imageLengthInMemory":{length},'
               f'"imageLinkTimeAddress":{link},"devicePath":{_esc(text)},"devicePathNodes":[{node_text}]')
        trailing = data[size + path_len:]
        if trailing:
            out += f',"trailing":"{trailing.hex()}"'
        return out + "}"
    return image_load


_IH = struct.Struct("<IH")
_BOOLEAN_VARIABLES = ("SecureBoot", "DeployedMode", "AuditMode", "SetupMode", "MokSBState")
_HOT: dict | None = None
_SIGNATURE_TYPE_NAMES: dict[str, str] = {}
_X509_TEXT = ""


def _hot_paths() -> dict:
    global _HOT, _X509_TEXT
    if _HOT is None:
        from pcrtool.tcg.guid import EFI_CERT_X509_GUID, SIGNATURE_TYPES

        _SIGNATURE_TYPE_NAMES.update({str(k): v for k, v in SIGNATURE_TYPES.items()})
        _X509_TEXT = str(EFI_CERT_X509_GUID)
        _HOT = {int(EventType.EV_IPL): _ipl_fast,
                int(EventType.EV_EFI_VARIABLE_DRIVER_CONFIG): _variable_fast,
                int(EventType.EV_EFI_VARIABLE_BOOT): _variable_fast,
                int(EventType.EV_EFI_VARIABLE_BOOT2): _variable_fast}
    return _HOT
