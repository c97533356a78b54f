"""Real photographs from Debian's ``gcompris-qt-data`` (GCompris' activity data), read straight
out of its Qt resource bundles (``/usr/share/gcompris-qt/rcc/*.rcc``), nothing unpacked to disk.

    apt-get install -y gcompris-qt-data        (44 MB download; scripts/setup.sh installs it)

The groups used (219 real photographs, checked by eye; WebP, which PyPI's Pillow reads):
    erase                 33  wild and farm animals, 1920x1080
    world_animals         15  animals, about 1024x768
    farm_animals           9  farm animals, about 1024x768
    monuments             49  monuments, buildings, landscapes, about 1024x700
    renewable             29  dams, solar panels, windmills, 320x240
    fishes                28  fish, 320x214
    tools                 39  hammers, pliers, scissors, ..., 320x240
    others                17  household objects (cup, chair, bulb, ball, ...), 320x240
Left out: drawings, crops of paintings and the duplicate monument thumbnails. Licences (the
package's debian/copyright): GPL-3+ for the bulk; single Wikimedia Commons photographs under
CC-BY(-SA) 2.0-4.0 or in the public domain.

A Qt binary resource file ("qres", format versions 1-3) is a tree of named nodes; a file node
points at its data: a 4-byte big-endian length, then the bytes, zlib-compressed after a 4-byte
length when the node's flag 1 is set.
"""

from __future__ import annotations

import struct
import zlib
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterator

__all__ = ["RCC_DIR", "GROUPS", "DEBIAN_HINT", "iter_rcc", "photo_files"]

RCC_DIR = Path("/usr/share/gcompris-qt/rcc")
DEBIAN_HINT = ("GCompris' photographs are missing from /usr/share/gcompris-qt/rcc; install them with: "
               "sudo apt-get install -y gcompris-qt-data (scripts/setup.sh does it when run as root)")
# group -> (resource bundle, pattern of the paths inside it)
GROUPS: dict[str, tuple[str, str]] = {
    "erase": ("erase", "*/erase/resource/*.webp"),
    "world_animals": ("explore_world_animals", "*/explore_world_animals/resource/animals/*.webp"),
    "farm_animals": ("explore_farm_animals", "*/explore_farm_animals/resource/animals/*.webp"),
    "monuments": ("explore_monuments", "*/explore_monuments/resource/*/*.webp"),
    "renewable": ("categorization", "*/categorization/resource/images/renewable/*.webp"),
    "fishes": ("categorization", "*/categorization/resource/images/fishes/*.webp"),
    "tools": ("categorization", "*/categorization/resource/images/tools/*.webp"),
    "others": ("categorization", "*/categorization/resource/images/others/*.webp"),
}
_MIN_PHOTOS = 200  # fewer means the package's layout changed: refuse rather than shrink the set


def iter_rcc(path: Path) -> Iterator[tuple[str, bytes]]:
    """(path inside the bundle, file bytes) for every file of a Qt binary resource file."""
    data = Path(path).read_bytes()
    if data[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset : names + offset + 2])[0]
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        at = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[at : at + 6])
        here = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & 2:  # a directory: its children are consecutive nodes
            count, first = struct.unpack(">II", data[at + 6 : at + 14])
            stack.extend((child, here) for child in range(first, first + count))
            continue
        start = payload + struct.unpack(">I", data[at + 10 : at + 14])[0]
        blob = data[start + 4 : start + 4 + struct.unpack(">I", data[start : start + 4])[0]]
        if flags & 1:  # zlib, after qCompress's 4-byte length
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            raise ValueError(f"{path}: a zstd-compressed entry ({here}); this GCompris release is not supported")
        yield here.lstrip("/"), blob


def photo_files(rcc_dir: Path = RCC_DIR) -> dict[str, list[tuple[str, bytes]]]:
    """{group: [(file name, encoded image bytes)], sorted by name} of every group in ``GROUPS``."""
    bundles: dict[str, list[tuple[str, bytes]]] = {}
    out: dict[str, list[tuple[str, bytes]]] = {}
    for group, (bundle, pattern) in GROUPS.items():
        if bundle not in bundles:
            path = Path(rcc_dir) / f"{bundle}.rcc"
            if not path.is_file():
                raise FileNotFoundError(DEBIAN_HINT)
            bundles[bundle] = list(iter_rcc(path))
        out[group] = sorted((p.rsplit("/", 1)[-1], blob) for p, blob in bundles[bundle] if fnmatch(p, pattern))
    total = sum(len(v) for v in out.values())
    if total < _MIN_PHOTOS:
        raise FileNotFoundError(f"only {total} of GCompris' photographs found under {rcc_dir}: the package's layout "
                                "differs from the one neutronq reads (gcompris-qt-data 3.x of Debian 12)")
    return out
