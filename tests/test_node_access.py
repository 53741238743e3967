"""Access to nodes without a testbed: ``Node.open_tcp`` and ``Node.host_argv``.

``open_tcp`` (a TCP stream from a node's own network, usable as paramiko's ``sock=``): the host
and namespace variant (:class:`~flatbed.localnode.LocalNode`) against listeners on this host and
in a namespace made here (root only), and the VM variant (:class:`~flatbed.sshnode.SSHNode`, a
``direct-tcpip`` channel) against an in-process paramiko server standing in for a VM's sshd.
``host_argv`` on VMs: OpenSSH's command line, and the guard that ends a pty-less remote command
when its connection goes (run here, with a shell standing in for sshd's session process).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from flatbed import hostnet
from flatbed.errors import FlatbedError, NodeGoneError
from flatbed.localnode import LocalNode
from flatbed.sshnode import HANGUP_GUARD, SSHNode, SSHTarget

GUEST_USER, GUEST_PASSWORD = "cirros", "cubswin:)"


def serve(listener: socket.socket, handle) -> threading.Thread:  # noqa: ANN001 - a callable on a socket
    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener closed
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def roundtrip(stream, payload: bytes = b"flatbed\n") -> bytes:  # noqa: ANN001 - socket or channel
    stream.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = stream.recv(4096)
        assert chunk, "the stream ended early"
        got += chunk
    return got


def listener_in(namespace: str | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (an ephemeral port) in ``namespace`` (None: this one)."""
    made: dict[str, socket.socket] = {}

    def make() -> None:
        if namespace:
            from pyroute2 import netns

            netns.setns(str(hostnet.NETNS_DIR / namespace), flags=0)
        made["sock"] = socket.create_server(("127.0.0.1", 0))

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    return made["sock"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- containers and namespace hosts -----------------------------------------------------------

def test_host_node_opens_a_blocking_stream_that_carries_bytes():
    with listener_in(None) as listener:
        serve(listener, echo)
        stream = LocalNode("outside", "outside").open_tcp("127.0.0.1", listener.getsockname()[1])
        with stream:
            assert stream.gettimeout() is None  # paramiko sets its own timeouts
            assert roundtrip(stream) == b"flatbed\n"


def test_a_refused_connection_is_the_sockets_own_error():
    with pytest.raises(ConnectionRefusedError):
        LocalNode("outside", "outside").open_tcp("127.0.0.1", free_port(), timeout=2)


def test_a_gone_namespace_is_node_gone_and_is_not_created():
    name = f"flatbed-unit-missing-{os.getpid()}"
    node = LocalNode("outside", "outside", name)
    with pytest.raises(NodeGoneError, match=name):
        node.open_tcp("127.0.0.1", 22)
    assert not hostnet.exists(name)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    pytest.importorskip("pyroute2", reason="creates a network namespace (pyroute2)")
    name = f"flatbed-unit-{os.getpid()}"  # not a run tag: `flatbed leaks` never sees it
    hostnet.create_namespace(name)
    try:
        yield name
    finally:
        hostnet.remove_namespace(name)


def test_the_stream_is_opened_from_the_nodes_namespace(namespace):
    own_netns = os.readlink("/proc/thread-self/ns/net")
    with listener_in(namespace) as listener:
        serve(listener, echo)
        port = listener.getsockname()[1]
        with LocalNode("controller-1", "controller", namespace).open_tcp("127.0.0.1", port) as stream:
            assert roundtrip(stream) == b"flatbed\n"
        # The same address and port from the host's namespace is another machine's loopback.
        with pytest.raises(ConnectionRefusedError):
            LocalNode("host", "outside").open_tcp("127.0.0.1", port, timeout=2)
    assert os.readlink("/proc/thread-self/ns/net") == own_netns  # the caller never moved


# --- an SSH server standing in for a VM's sshd and for a guest's dropbear ---------------------

HOST_KEY = paramiko.RSAKey.generate(1024)
ECHO_PORT, REFUSED_PORT, PROHIBITED_PORT, SILENT_PORT = 7, 9, 10, 11


class FakeSshd(paramiko.ServerInterface):
    """Logs anyone in; ``direct-tcpip`` to ECHO_PORT is served by an echo, the others fail."""

    def __init__(self, release: threading.Event):
        self.release = release
        self.requests: list[tuple[str, int]] = []
        self.forwarded: set[int] = set()  # channel ids of accepted direct-tcpip opens
        self.executed: list[tuple[paramiko.Channel, bytes]] = []

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = (username, password) == (GUEST_USER, GUEST_PASSWORD)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.executed.append((channel, command))  # answered by answer(), once the client has its reply
        return True

    def answer(self) -> None:
        channel, command = self.executed.pop(0)
        channel.sendall(b"ran " + command)
        channel.send_exit_status(0)
        channel.close()

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple, destination: tuple) -> int:
        self.requests.append(destination)
        port = destination[1]
        if port == SILENT_PORT:
            self.release.wait(10)  # never answers in time: the client's timeout decides
        if port == PROHIBITED_PORT:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        if port != ECHO_PORT:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        self.forwarded.add(chanid)
        return paramiko.OPEN_SUCCEEDED


def ssh_server(conn: socket.socket, sshd: FakeSshd) -> paramiko.Transport:
    transport = paramiko.Transport(conn)
    transport.add_server_key(HOST_KEY)
    transport.start_server(event=threading.Event(), server=sshd)  # negotiates in its own thread

    def channels() -> None:
        while (channel := transport.accept(timeout=None)) is not None:
            if channel.get_id() in sshd.forwarded:
                threading.Thread(target=echo_channel, args=(channel,), daemon=True).start()

    threading.Thread(target=channels, daemon=True).start()
    return transport


def echo_channel(channel: paramiko.Channel) -> None:
    with channel:
        while data := channel.recv(4096):
            channel.sendall(data)


@pytest.fixture
def vm() -> Iterator[tuple[SSHNode, FakeSshd]]:
    """An SSHNode whose connection is to a FakeSshd over a socket pair."""
    release = threading.Event()
    sshd = FakeSshd(release)
    ours, theirs = socket.socketpair()
    server = ssh_server(theirs, sshd)
    client = paramiko.Transport(ours)
    client.connect(username=GUEST_USER, password=GUEST_PASSWORD)
    target = SSHTarget(host="192.168.56.200", port=22, user="root", identity="/nonexistent", known_hosts="/dev/null")
    node = SSHNode("compute-1", "compute", target, is_running=lambda: True)
    node._transport = lambda: client  # the node's cached connection, as _client() would hand it out
    try:
        yield node, sshd
    finally:
        release.set()
        client.close()
        server.close()


def test_a_vm_opens_a_direct_tcpip_channel_to_the_address_as_given(vm):
    node, sshd = vm
    with node.open_tcp("10.0.0.2", ECHO_PORT) as stream:
        assert roundtrip(stream) == b"flatbed\n"
    assert sshd.requests == [("10.0.0.2", ECHO_PORT)]


def test_a_vm_that_cannot_connect_raises_a_connection_error(vm):
    node, _ = vm
    with pytest.raises(ConnectionError, match=r"compute-1: connecting to 10\.0\.0\.2:9"):
        node.open_tcp("10.0.0.2", REFUSED_PORT)


def test_a_vm_whose_sshd_forbids_forwarding_says_so_and_is_no_oserror(vm):
    node, _ = vm
    with pytest.raises(FlatbedError, match="AllowTcpForwarding") as raised:
        node.open_tcp("10.0.0.2", PROHIBITED_PORT)
    assert not isinstance(raised.value, OSError)


def test_a_vm_that_does_not_answer_in_time_raises_timeout(vm):
    node, _ = vm
    with pytest.raises(TimeoutError, match="within 0.3 s"):
        node.open_tcp("10.0.0.2", SILENT_PORT, timeout=0.3)


def test_paramiko_logs_in_over_the_stream():
    """The guest-SSH path: paramiko's SSHClient with ``sock=`` the node's stream."""
    sshd = FakeSshd(threading.Event())
    with listener_in(None) as listener:
        serve(listener, lambda conn: ssh_server(conn, sshd))
        stream = LocalNode("controller-1", "controller").open_tcp("127.0.0.1", listener.getsockname()[1])
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("10.0.0.2", username=GUEST_USER, password=GUEST_PASSWORD, sock=stream,
                       look_for_keys=False, allow_agent=False, timeout=10)
        try:
            _, out, _ = client.exec_command("ip a")
            sshd.answer()
            assert out.read() == b"ran ip a"
        finally:
            client.close()


# --- host_argv on VMs -------------------------------------------------------------------------

def vm_node(tmp_path, netns: str | None = None, running: bool = True) -> SSHNode:
    target = SSHTarget(host="192.168.56.202", port=22, user="root", identity=str(tmp_path / "id_ed25519"),
                       known_hosts=str(tmp_path / "known_hosts"), netns=netns)
    return SSHNode("compute-1", "compute", target, is_running=lambda: running)


def test_ssh_to_a_vm_uses_the_runs_key_and_only_the_pinned_host_key(tmp_path):
    argv = vm_node(tmp_path).host_argv(["/bin/bash", "-l"], tty=True)
    assert argv[:2] == ["ssh", "-t"] and argv[-3:-1] == ["192.168.56.202", "--"]
    options = dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-o")
    assert options["StrictHostKeyChecking"] == "yes" and options["BatchMode"] == "yes"
    assert options["UserKnownHostsFile"] == str(tmp_path / "known_hosts")
    assert options["GlobalKnownHostsFile"] == "/dev/null" and options["IdentitiesOnly"] == "yes"
    assert argv[argv.index("-i") + 1] == str(tmp_path / "id_ed25519") and argv[argv.index("-l") + 1] == "root"
    assert argv[argv.index("-F") + 1] == "/dev/null"
    assert argv[-1].startswith("env -i PATH=") and argv[-1].endswith(" /bin/bash -l")


def test_ssh_without_a_terminal_runs_the_command_under_the_hangup_guard(tmp_path):
    argv = vm_node(tmp_path).host_argv(["tail", "-F", "/x/console.log"])
    assert argv[:2] == ["ssh", "-T"]
    assert argv[-1].endswith(" sh tail -F /x/console.log") and "session=$PPID" in argv[-1]


def test_ssh_runs_from_the_testbeds_namespace(tmp_path, monkeypatch):
    monkeypatch.setattr(hostnet, "exists", lambda name: name == "fb000001-outside")
    argv = vm_node(tmp_path, netns="fb000001-outside").host_argv(["true"])
    assert argv[:3] == ["nsenter", "--net=/run/netns/fb000001-outside", "--"] and argv[3] == "ssh"


def test_ssh_to_a_gone_vm_or_namespace_is_one_line(tmp_path):
    with pytest.raises(NodeGoneError, match=r"^compute-1: the VM is not running$"):
        vm_node(tmp_path, running=False).host_argv(["true"])
    with pytest.raises(NodeGoneError, match=r"^compute-1: network namespace fb-gone-x is gone$"):
        vm_node(tmp_path, netns="fb-gone-x").host_argv(["true"])


def guarded(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """The guard as sshd runs it: the child of a live session process (here a waiting shell)."""
    return subprocess.run(["sh", "-c", 'sh -c "$0" sh "$@"; exit $?', HANGUP_GUARD, *argv], input=stdin,
                          capture_output=True, timeout=30)


def test_the_hangup_guard_passes_stdin_output_and_exit_status():
    done = guarded("sh", "-c", "cat; exit 3", stdin=b"typed\n")
    assert (done.returncode, done.stdout) == (3, b"typed\n")


def test_the_hangup_guard_ends_the_command_once_its_session_is_gone(tmp_path):
    pidfile = tmp_path / "pid"
    # The "session" starts the guard in the background and leaves at once, as sshd does when its
    # client disconnects; the command (a sleep standing in for tail -F) must not stay behind.
    subprocess.run(["sh", "-c", 'sh -c "$0" sh sh -c \'echo $$ > "$1"; exec sleep 300\' sh "$1" & sleep 0.5',
                    HANGUP_GUARD, str(pidfile)], timeout=30, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5  # the guard looks once a second
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the command outlived its session"
