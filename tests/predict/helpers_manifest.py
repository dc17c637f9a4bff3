"""The release-manifest vector shared by the manifest tests and the fuzz seeds: systemd TEST-70's
UKI sections (.linux "HALLO\\n", .initrd "foobar\\n") in a manifest with two boot phases, and the
PCR 11 values systemd-measure gives for them."""

FILES = {"vmlinuz": b"HALLO\n", "initrd.img": b"foobar\n"}
V_COLON = "37b48bd0b222394dbe3cceff2fca4660c4b0a90ae9369ec90b42f14489989c13"  # systemd TEST-70
V_FOO = "21c49c1242042649e09c156546fd7d425ccc3c67359f840507b30be4e0f6f699"

MANIFEST = """
name = "fooos"
version = "2.1"
svn = 3
phases = [":", "foo"]
[uki.sections]
linux = "vmlinuz"
initrd = "initrd.img"
"""

# The same release as a JSON manifest, phase "foo" only.
MANIFEST_JSON = {"name": "fooos", "version": "2.1", "svn": 3, "phases": ["foo"],
                 "uki": {"sections": {"linux": "vmlinuz", "initrd": "initrd.img"}}}
