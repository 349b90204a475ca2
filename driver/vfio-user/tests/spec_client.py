#!/usr/bin/env python3
"""A vfio-user client written from the specification (QEMU's
docs/interop/vfio-user.rst), standard library only, independent of the
Rust code it tests. It proposes what QEMU's client proposes (version 0.x,
its capabilities), checks the server's reply by the specification's rules,
then walks the device as a VFIO-PCI client would: device info, every
region, configuration space (ids, class, BAR0 sizing, the capability list
to MSI-X) and a DMA map of an ordinary, unsealed file.

Usage: spec_client.py SOCKET. Exit 0 and print "ok" on success; exit 1
with the reason otherwise. Every socket operation has a timeout.
"""

import json
import os
import socket
import struct
import sys
import tempfile

VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_IRQ_INFO, REGION_READ, REGION_WRITE = 7, 9, 10
TYPE_REPLY, FLAG_ERROR = 1, 1 << 5
CONFIG_REGION = 7
PROPOSED_MINOR = 3
PROPOSED = {
    "max_msg_fds": 16,
    "max_data_xfer_size": 1048576,
    "pgsizes": 4096,
    "max_dma_maps": 65535,
    "migration": {"pgsize": 4096, "max_bitmap_size": 1048576},
    "write_multiple": True,
}


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(path)
        self.next_id = 0x100

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            check(chunk, "server closed the connection")
            buf += chunk
        return buf

    def call(self, command, payload=b"", fds=()):
        """Send a command; return (errno or None, reply payload)."""
        msg_id = self.next_id
        self.next_id += 1
        header = struct.pack("=HHIII", msg_id, command, 16 + len(payload), 0, 0)
        if fds:
            socket.send_fds(self.s, [header + payload], list(fds))
        else:
            self.s.sendall(header + payload)
        rid, rcmd, size, flags, err = struct.unpack("=HHIII", self.recv_exact(16))
        check(size >= 16, "reply size below the header size")
        body = self.recv_exact(size - 16)
        check(flags & 0xF == TYPE_REPLY, "not a reply")
        check(rid == msg_id and rcmd == command, "reply does not match the command")
        if flags & FLAG_ERROR:
            check(not body, "an error reply carries a payload")
            return err, b""
        return None, body

    def ok(self, command, payload=b"", fds=()):
        err, body = self.call(command, payload, fds)
        check(err is None, f"command {command} failed with errno {err}")
        return body


def negotiate(c):
    text = json.dumps({"capabilities": PROPOSED}).encode() + b"\0"
    body = c.ok(VERSION, struct.pack("=HH", 0, PROPOSED_MINOR) + text)
    major, minor = struct.unpack("=HH", body[:4])
    check(major == 0, f"reply major {major}, proposed 0")
    check(minor <= PROPOSED_MINOR, f"reply minor {minor} above the proposed {PROPOSED_MINOR}")
    data = body[4:]
    caps = {}
    if data:
        check(data.endswith(b"\0"), "version data without its NUL")
        doc = json.loads(data[:-1].decode("utf-8"))
        caps = doc.get("capabilities", {})
    for name, value in caps.items():
        check(name in PROPOSED, f"capability {name} was not proposed")
        if isinstance(PROPOSED[name], int) and not isinstance(PROPOSED[name], bool):
            check(isinstance(value, int), f"{name} is not a number")
            if name == "pgsizes":
                check(value & ~PROPOSED[name] == 0 and value, "pgsizes not a subset")
            else:
                check(value <= PROPOSED[name], f"{name} = {value} above the proposal")
    return caps


def region_read(c, region, offset, count):
    body = c.ok(REGION_READ, struct.pack("=QII", offset, region, count))
    check(struct.unpack("=QII", body[:16]) == (offset, region, count), "read echo")
    check(len(body) == 16 + count, "read data length")
    return body[16:]


def region_write(c, region, offset, data):
    body = c.ok(REGION_WRITE, struct.pack("=QII", offset, region, len(data)) + data)
    check(struct.unpack("=QII", body[:16]) == (offset, region, len(data)), "write echo")


def main(path):
    c = Conn(path)
    caps = negotiate(c)

    argsz, flags, num_regions, num_irqs = struct.unpack(
        "=IIII", c.ok(GET_INFO, struct.pack("=IIII", 16, 0, 0, 0))
    )
    check(flags & 2, "not a PCI device")
    check(num_regions >= 9 and num_irqs >= 5, "fewer regions/IRQs than VFIO-PCI has")

    sizes = {}
    for index in range(9):
        body = c.ok(GET_REGION_INFO, struct.pack("=IIIIQQ", 32, 0, index, 0, 0, 0))
        _, rflags, rindex, _, size, _ = struct.unpack("=IIIIQQ", body[:32])
        check(rindex == index, "region info for another index")
        sizes[index] = (size, rflags)
    cfg_size, cfg_flags = sizes[CONFIG_REGION]
    check(cfg_size >= 256 and cfg_flags & 3 == 3, "no read/write config space")

    cfg = region_read(c, CONFIG_REGION, 0, 64)
    vendor, device = struct.unpack("<HH", cfg[0:4])
    check(vendor not in (0, 0xFFFF), "no vendor id")
    check(cfg[0x0B] == 0x05 and cfg[0x0A] == 0x80, "class is not 0x0580")
    check(cfg[0x0E] & 0x7F == 0, "not a type-0 header")
    # BAR0 sizing: write all ones, read back the size mask.
    region_write(c, CONFIG_REGION, 0x10, struct.pack("<I", 0xFFFFFFFF))
    mask = struct.unpack("<I", region_read(c, CONFIG_REGION, 0x10, 4))[0]
    check(mask & 1 == 0, "BAR0 is not a memory BAR")
    bar0 = (~(mask & 0xFFFFFFF0) + 1) & 0xFFFFFFFF
    check(bar0 >= sizes[0][0], f"BAR0 decodes {bar0:#x}, region 0 is {sizes[0][0]:#x}")
    # Walk the capability list to MSI-X.
    check(struct.unpack("<H", cfg[6:8])[0] & 0x10, "no capability list")
    ptr, seen, msix = cfg[0x34], 0, None
    while ptr and seen < 48:
        cap = region_read(c, CONFIG_REGION, ptr, 4)
        if cap[0] == 0x11:
            msix = ptr
        ptr, seen = cap[1], seen + 1
    check(msix is not None, "no MSI-X capability")
    table = struct.unpack("<I", region_read(c, CONFIG_REGION, msix + 4, 4))[0]
    check(sizes[table & 7][0] > 0, "MSI-X table in an absent BAR")
    # Out of range is an error reply, not a crash or a hang.
    err, _ = c.call(REGION_READ, struct.pack("=QII", cfg_size, CONFIG_REGION, 4))
    check(err == 22, f"read past config space gave errno {err}")

    # DMA map of an ordinary, unsealed file.
    with tempfile.TemporaryFile() as f:
        f.truncate(8192)
        c.ok(DMA_MAP, struct.pack("=IIQQQ", 32, 3, 0, 0x1000_0000, 8192), [f.fileno()])
        err, _ = c.call(DMA_MAP, struct.pack("=IIQQQ", 32, 3, 0, 0x1000_1000, 4096), [f.fileno()])
        check(err == 17, f"overlapping map gave errno {err}")
        c.ok(DMA_UNMAP, struct.pack("=IIQQ", 24, 0, 0x1000_0000, 8192))
    c.s.close()
    print("ok", json.dumps(caps, sort_keys=True))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except (Fail, OSError, ValueError, struct.error) as e:
        print(f"spec client: {e}", file=sys.stderr)
        sys.exit(1)
