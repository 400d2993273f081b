"""Who is at the other end of a connection to the runtime's port: a process on this instance, and
if so whether it belongs to a build.

FC's agent is not one of the runtime's processes; a build is. Linux knows every TCP socket of this
network namespace with its owner's uid and its inode: asked through sock_diag (a netlink query for
one socket by its four addresses, some microseconds), else read from /proc/net/tcp (which the kernel
writes whole, a few milliseconds). So a connection from a process on the instance is found by its
address, and its owner is known without trusting anything the caller says. A build runs as a build
user (when the runtime is root) and is always a descendant of the runtime (the runtime is their
child subreaper: orphans come back to it), so either fact marks it. A local socket whose owner
cannot be told (gone already, or closed and orphaned: inode 0) is treated as a build's: a caller
cannot make itself anonymous to get in.

Stdlib only: asked once per connection, before its first request is read.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Iterable

TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2


class Peer:
    """What the kernel says of a connection's other end. `local` False: not a socket of this host.
    (A plain class: a dataclass costs ~3 ms of the runtime's start, and this module is on its path.)"""

    __slots__ = ("local", "uid", "inode")

    def __init__(self, local: bool, uid: int | None = None, inode: int = 0) -> None:
        self.local, self.uid, self.inode = local, uid, inode

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Peer) and (self.local, self.uid, self.inode) == (other.local, other.uid, other.inode)

    def __repr__(self) -> str:
        return f"Peer(local={self.local}, uid={self.uid}, inode={self.inode})"

    def describe(self) -> str:
        if not self.local:
            return "a remote peer"
        if self.uid is None or not self.inode:
            return "a process on this instance whose socket has no owner any more"
        return f"a process of uid {self.uid} on this instance"


def identify(
    peer_addr: tuple[str, int], own_addr: tuple[str, int], tables: Iterable[str] = TCP_TABLES, *, netlink: bool = True
) -> Peer:
    """The socket at `peer_addr` connected to `own_addr`: through sock_diag, else /proc/net/tcp."""
    if netlink:
        try:
            return _ask_kernel(peer_addr, own_addr)
        except OSError:
            pass  # no sock_diag in this sandbox: the tables tell the same, slower
    return _read_tables(peer_addr, own_addr, tables)


def _ask_kernel(peer_addr: tuple[str, int], own_addr: tuple[str, int]) -> Peer:
    """One SOCK_DIAG_BY_FAMILY request for the socket whose source is `peer_addr` and destination
    `own_addr`: its owner's uid and its inode (0 once its process has closed it), or ENOENT."""
    src, dst = ipaddress.ip_address(peer_addr[0]), ipaddress.ip_address(own_addr[0])
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    sockid = struct.pack(
        "!HH16s16s", int(peer_addr[1]), int(own_addr[1]), src.packed.ljust(16, b"\0"), dst.packed.ljust(16, b"\0")
    ) + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    message = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.send(message)
        data = nl.recv(65536)
    _, kind = struct.unpack_from("=IH", data)
    if kind == NLMSG_ERROR:
        error = -struct.unpack_from("=i", data, 16)[0]
        if error != errno.ENOENT:
            raise OSError(error, os.strerror(error))
        mapped = getattr(src, "ipv4_mapped", None) or src
        return Peer(local=mapped.is_loopback or peer_addr[0] == own_addr[0])
    uid, inode = struct.unpack_from("=II", data, 16 + 4 + 48 + 12)
    return Peer(local=True, uid=uid, inode=inode)


def _read_tables(peer_addr: tuple[str, int], own_addr: tuple[str, int], tables: Iterable[str]) -> Peer:
    """The same from /proc/net/tcp: found by the text the kernel writes for the two addresses, and
    only that line parsed."""
    v4 = ipaddress.ip_address(peer_addr[0]).version == 4
    for table in tables:
        wide = table.endswith("6")
        if wide and v4 and ipaddress.ip_address(own_addr[0]).version == 4:
            continue  # an IPv4 socket pair is in the IPv4 table (the kernel writes each table in ~2 ms)
        try:
            with open(table, "rb") as f:
                data = f.read()
        except OSError:
            continue
        needle = b" %s %s " % (_kernel_text(peer_addr, wide), _kernel_text(own_addr, wide))
        at = data.find(needle)
        if at < 0:
            continue
        line = data[data.rfind(b"\n", 0, at) + 1 : data.find(b"\n", at) if b"\n" in data[at:] else len(data)]
        fields = line.split()
        if len(fields) >= 10:
            return Peer(local=True, uid=int(fields[7]), inode=int(fields[9]))
    # Not listed: a host elsewhere, unless the address is one of ours (then it closed meanwhile).
    ip = ipaddress.ip_address(peer_addr[0])
    mapped = getattr(ip, "ipv4_mapped", None) or ip
    return Peer(local=mapped.is_loopback or peer_addr[0] == own_addr[0])


def held_by_descendant(inode: int, root_pid: int | None = None) -> int | None:
    """The pid of a descendant of `root_pid` (this process) holding socket `inode`, or None."""
    root_pid = root_pid or os.getpid()
    target = f"socket:[{inode}]"
    todo = _children(root_pid)
    while todo:
        pid = todo.pop()
        todo.extend(_children(pid))
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _children(pid: int) -> list[int]:
    """The children of `pid`, from its threads' /proc children lists (only the descendants are
    read, not every process of the host); from every process's parent where the kernel has no such
    list."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            return _children_by_parent(pid)
        except OSError:
            continue
    return found


def _children_by_parent(pid: int) -> list[int]:
    import sandbox  # the slow way, for kernels without children lists

    return [p.pid for p in sandbox.processes() if p.ppid == pid]


def _kernel_text(addr: tuple[str, int], wide: bool) -> bytes:
    """`127.0.0.1:9000` as /proc/net/tcp writes it (`0100007F:2328`: each 32-bit word of the address
    in host order, then the port), or as /proc/net/tcp6 writes it when `wide` (IPv4 mapped)."""
    ip = ipaddress.ip_address(addr[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    packed = ip.packed
    if wide and len(packed) == 4:
        packed = b"\0" * 10 + b"\xff\xff" + packed
    if not wide and len(packed) != 4:
        return b"-"  # an IPv6 address is not in the IPv4 table
    words = [packed[i : i + 4][::-1] if _LITTLE else packed[i : i + 4] for i in range(0, len(packed), 4)]
    return b"%s:%04X" % (b"".join(words).hex().upper().encode(), int(addr[1]))


_LITTLE = sys.byteorder == "little"
