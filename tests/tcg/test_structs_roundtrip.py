"""parse(build(x)) == x for the construct definitions in pcrtool.tcg.structs, and the hand-written
hot-path decoders agree with them on every corpus payload."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pcrtool.eventlog import EventType, parse_event_log
from pcrtool.eventlog.decode.variables import parse_variable_data
from pcrtool.tcg import structs
from pcrtool.tcg.devicepath import DevicePathNode, build_device_path, parse_device_path

S = settings(deadline=None, max_examples=60)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
guids = st.uuids()


def strip(obj):
    """construct Containers → plain dicts without the private keys (_io …)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def roundtrip(struct, value, **params):
    built = struct.build(value, **params)
    parsed = strip(struct.parse(built, **params))
    assert struct.build(parsed, **params) == built
    for key, v in value.items():
        assert parsed[key] == v, key
    return built


@S
@given(guids, st.text(max_size=20).map(lambda s: s.encode("utf-16-le")), st.binary(max_size=64))
def test_uefi_variable_data(guid, name, data):
    built = roundtrip(structs.UEFI_VARIABLE_DATA, dict(variable_name=guid, unicode_name=name, variable_data=data))
    g, n, d, rest = parse_variable_data(built)
    assert (g, d, rest) == (str(guid), data, b"")


@S
@given(u32, u32, st.binary(min_size=20, max_size=20), st.binary(max_size=64))
def test_tcg_pcr_event(pcr, etype, digest, event):
    roundtrip(structs.TCG_PCR_EVENT, dict(pcr_index=pcr, event_type=etype, digest=digest, event=event))


@S
@given(u32, u32, st.binary(max_size=64), st.booleans())
def test_tcg_pcr_event2(pcr, etype, event, both):
    digests = [dict(hash_alg=0x000B, digest=b"\x0b" * 32)] + ([dict(hash_alg=4, digest=b"\x04" * 20)] if both else [])
    roundtrip(structs.TCG_PCR_EVENT2, dict(pcr_index=pcr, event_type=etype, digests=digests, event=event),
              digest_sizes={4: 20, 0x0B: 32})


@S
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(1, 64)), min_size=1, max_size=5),
       st.integers(1, 2), st.binary(max_size=16))
def test_spec_id(algs, uintn, vendor):
    roundtrip(structs.TCG_EfiSpecIDEvent, dict(
        signature=b"Spec ID Event03\0", platform_class=0, spec_version_minor=0, spec_version_major=2,
        spec_errata=0, uintn_size=uintn, digest_sizes=[dict(algorithm_id=a, digest_size=s) for a, s in algs],
        vendor_info=vendor))


@S
@given(guids, st.integers(16, 40).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.uuids(), st.binary(min_size=n - 16, max_size=n - 16)), max_size=4))))
def test_efi_signature_list(sig_type, size_and_sigs):
    size, sigs = size_and_sigs
    roundtrip(structs.EFI_SIGNATURE_LIST, dict(
        signature_type=sig_type, signature_size=size, signature_header=b"",
        signatures=[dict(signature_owner=o, signature_data=d) for o, d in sigs]))


@S
@given(u64, u64, u64, st.binary(max_size=40), st.sampled_from([4, 8]))
def test_image_load_event(loc, length, link, path, width):
    mask = 2**32 - 1 if width == 4 else 2**64 - 1
    roundtrip(structs.uefi_image_load_event(width), dict(
        image_location_in_memory=loc, image_length_in_memory=length & mask,
        image_link_time_address=link & mask, device_path=path))


@S
@given(st.lists(st.tuples(st.integers(0, 0x7E), st.integers(0, 255), st.binary(max_size=30)), max_size=6))
def test_device_path_nodes(nodes):
    raw = build_device_path([DevicePathNode(t, s, d) for t, s, d in nodes])
    path = parse_device_path(raw)
    assert [(n.type, n.subtype, n.data) for n in path.nodes[:-1]] == nodes
    assert path.to_bytes() == raw
    assert isinstance(path.text, str)


@S
@given(u32, st.binary(max_size=40))
def test_tagged_event(tag, data):
    roundtrip(structs.TCG_PCClientTaggedEvent, dict(tagged_event_id=tag, tagged_event_data=data))


@S
@given(st.binary(max_size=20), u64, u64)
def test_blob2(desc, base, length):
    roundtrip(structs.UEFI_PLATFORM_FIRMWARE_BLOB2, dict(blob_description=desc, blob_base=base, blob_length=length))


def test_hand_decoders_agree_with_construct_on_corpus(corpus):
    checked = 0
    for name in ("go-tpm-tools/ubuntu-2404-amd-sevsnp.bin", "tpm2-tools/event-moklisttrusted.bin",
                 "python3-uefi-eventlog/ideapad1.bin", "guard-oss/h12ssl.bios_measurements"):
        log = parse_event_log((corpus / "logs" / name).read_bytes())
        for ev in log.events:
            if ev.event_type in (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_BOOT):
                c = structs.UEFI_VARIABLE_DATA.parse(ev.data)
                g, n, d, _ = parse_variable_data(ev.data)
                assert (str(c.variable_name), c.unicode_name.decode("utf-16-le"), c.variable_data) == (g, n, d)
                checked += 1
            if ev.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION:
                c = structs.uefi_image_load_event(log.uintn_bytes).parse(ev.data)
                from pcrtool.eventlog import decode_event
                v = decode_event(ev, log)
                assert (v.location, v.length, v.device_path.to_bytes()) == \
                    (c.image_location_in_memory, c.image_length_in_memory, c.device_path)
                checked += 1
            if ev.event_type == EventType.EV_EFI_GPT_EVENT:
                from pcrtool.eventlog import decode_event
                c = structs.uefi_gpt_data(log.uintn_bytes).parse(ev.data)
                v = decode_event(ev, log)
                assert v.disk_guid == str(c.header.disk_guid)
                assert [(p.type_guid, p.unique_guid, p.first_lba, p.last_lba, p.attributes) for p in v.partitions] == \
                    [(str(p.partition_type_guid), str(p.unique_partition_guid), p.starting_lba, p.ending_lba,
                      p.attributes) for p in c.partitions]
                checked += 1
    assert checked > 30
