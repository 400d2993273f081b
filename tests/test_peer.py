"""peer: the kernel's word on who holds the other end of a connection, over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

import peer

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_connection_from_this_process_is_local_with_its_owner():
    server = _listener()
    client = socket.create_connection(server.getsockname())
    conn, addr = server.accept()
    who = peer.identify(addr, conn.getsockname())
    assert who.local and who.uid == os.geteuid() and who.inode > 0
    assert peer.held_by_descendant(who.inode) is None  # this process is no descendant of itself
    for s in (client, conn, server):
        s.close()


def test_a_connection_from_a_child_is_found_among_the_descendants():
    server = _listener()
    host, port = server.getsockname()
    code = f"import socket, time; s = socket.create_connection(({host!r}, {port})); print('up', flush=True)"
    code += "; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        conn, addr = server.accept()
        assert child.stdout.readline() == b"up\n"
        who = peer.identify(addr, conn.getsockname())
        assert who.local and who.inode > 0
        assert peer.held_by_descendant(who.inode) == child.pid
        conn.close()
    finally:
        child.kill()
        child.wait()
        server.close()


@pytest.mark.parametrize("netlink", [True, False])
def test_a_peer_that_closed_its_socket_has_no_owner_to_trust(netlink):
    """A caller that sends its request and closes at once leaves an orphaned socket (uid 0, inode 0)
    or none: either way it is not a known owner."""
    server = _listener()
    client = socket.create_connection(server.getsockname())
    client.sendall(b"GET /pre-stop HTTP/1.1\r\n\r\n")
    client.close()
    conn, addr = server.accept()
    time.sleep(0.05)
    who = peer.identify(addr, conn.getsockname(), netlink=netlink)
    assert who.local
    assert who.uid is None or who.inode == 0, who
    conn.close()
    server.close()


def test_an_address_not_in_the_tables_is_remote_unless_it_is_ours(tmp_path):
    empty = tmp_path / "tcp"
    empty.write_text(HEADER)
    for netlink in (True, False):  # the kernel has no such socket either
        assert not peer.identify(("203.0.113.7", 40000), ("10.0.0.2", 9000), [str(empty)], netlink=netlink).local
        assert peer.identify(("10.0.0.2", 40000), ("10.0.0.2", 9000), [str(empty)], netlink=netlink).local
        assert peer.identify(("127.0.0.5", 40000), ("10.0.0.2", 9000), [str(empty)], netlink=netlink).local


def test_the_table_format_is_parsed_as_the_kernel_writes_it(tmp_path):
    table = tmp_path / "tcp"
    table.write_text(
        HEADER + "   0: 0200007F:9C40 0100007F:2328 01 00000000:00000000 00:00000000 00000000 21003  0 123456 1 0\n"
    )
    who = peer.identify(("127.0.0.2", 40000), ("127.0.0.1", 9000), [str(table)], netlink=False)
    assert (who.local, who.uid, who.inode) == (True, 21003, 123456)


def test_the_kernel_and_the_tables_agree():
    server = _listener()
    client = socket.create_connection(server.getsockname())
    conn, addr = server.accept()
    asked = peer.identify(addr, conn.getsockname())
    read = peer.identify(addr, conn.getsockname(), netlink=False)
    assert asked == read and asked.inode > 0
    for s in (client, conn, server):
        s.close()
