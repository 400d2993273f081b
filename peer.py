"""Who is at the other end of a connection to the runtime's port: a process on this instance, and
if so whether it belongs to a build.

FC's agent is not one of the runtime's processes; a build is. Linux lists every TCP socket of this
network namespace in /proc/net/tcp with its owner's uid and its inode, so a connection from a
process on the instance is found there by its address, and its owner is known without trusting
anything the caller says. A build runs as a build user (when the runtime is root) and is always a
descendant of the runtime (the runtime is their child subreaper: orphans come back to it), so either
fact marks it. A local socket whose owner cannot be told (gone already, or closed and orphaned:
inode 0) is treated as a build's: a caller cannot make itself anonymous to get in.

Stdlib only: asked once per connection, before its first request is read.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


@dataclass(frozen=True)
class Peer:
    """What the kernel says of a connection's other end. `local` False: not a socket of this host."""

    local: bool
    uid: int | None = None
    inode: int = 0

    def describe(self) -> str:
        if not self.local:
            return "a remote peer"
        if self.uid is None or not self.inode:
            return "a process on this instance whose socket has no owner any more"
        return f"a process of uid {self.uid} on this instance"


def identify(peer_addr: tuple[str, int], own_addr: tuple[str, int], tables: Iterable[str] = TCP_TABLES) -> Peer:
    """The socket at `peer_addr` connected to `own_addr`, as /proc/net/tcp lists it."""
    wanted_local = _key(peer_addr)
    wanted_remote = _key(own_addr)
    for table in tables:
        try:
            with open(table, "rb") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            if _parse(fields[1]) == wanted_local and _parse(fields[2]) == wanted_remote:
                return Peer(local=True, uid=int(fields[7]), inode=int(fields[9]))
    # Not listed: a host elsewhere, unless the address is one of ours (then it closed meanwhile).
    ip = ipaddress.ip_address(peer_addr[0])
    mapped = getattr(ip, "ipv4_mapped", None) or ip
    return Peer(local=mapped.is_loopback or peer_addr[0] == own_addr[0])


def held_by_descendant(inode: int, root_pid: int | None = None) -> int | None:
    """The pid of a descendant of `root_pid` (this process) holding socket `inode`, or None."""
    root_pid = root_pid or os.getpid()
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    target = f"socket:[{inode}]"
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
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


def _key(addr: tuple[str, int]) -> tuple[bytes, int]:
    ip = ipaddress.ip_address(addr[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ((mapped or ip).packed, int(addr[1]))


def _parse(field: bytes) -> tuple[bytes, int]:
    """`0100007F:1F90` (IPv4, each 32-bit word in host order) or the 32-digit IPv6 form."""
    hex_ip, _, hex_port = field.partition(b":")
    raw = bytes.fromhex(hex_ip.decode())
    words = [raw[i : i + 4][::-1] if _LITTLE else raw[i : i + 4] for i in range(0, len(raw), 4)]
    packed = b"".join(words)
    if len(packed) == 16 and packed[:12] == b"\0" * 10 + b"\xff\xff":
        packed = packed[12:]
    return (packed, int(hex_port, 16))


_LITTLE = sys.byteorder == "little"
