"""The nova-api binary, its flags and key pair crypto.

The daemon test runs the real ``bin/nova-api`` under Debian's python3 in a private network
namespace (``unshare -n``): its default ports are free there, and whatever iptables rule
``metadata_accept`` installs stays in that namespace and vanishes with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[1] / "stack"
sys.path.insert(0, str(STACK))

from nova import crypto, flags  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's, as on the nodes


def test_nova_api_flags_have_essex_defaults() -> None:
    conf = flags.parse("--my_ip=192.168.56.200\n--host=controller-1\n")
    assert (conf.osapi_compute_listen, conf.osapi_compute_listen_port) == ("0.0.0.0", 8774)
    assert (conf.metadata_listen, conf.metadata_listen_port, conf.metadata_port) == ("0.0.0.0", 8775, 8775)
    assert conf.use_forwarded_for is False and conf.node_availability_zone == "nova"
    assert conf.glance_port == 9292 and conf.image_store_path == "/var/lib/nova/images"
    assert conf.flavor_memory_mb == 0


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen (openssh-client)")
    private, public, fingerprint = crypto.generate_key_pair()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and public.startswith("ssh-rsa ")
    (tmp_path / "key.pub").write_text(public)
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "key.pub")],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed[0] == "1024" and listed[1] == f"MD5:{fingerprint}"


@pytest.mark.parametrize(("key", "why"), [
    ("", "expected '<type> <base64> [comment]'"),
    ("ssh-foo AAAA", "expected '<type> <base64> [comment]'"),
    ("ssh-rsa not*base64", "the key is not base64"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMq", "the key blob is not of type ssh-rsa"),
])
def test_invalid_public_keys(key: str, why: str) -> None:
    with pytest.raises(crypto.InvalidKeypair, match="^" + re.escape(f"Keypair data is invalid: {why}")):
        crypto.fingerprint(key)


def test_bad_flagfile_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "nova.conf"
    conf.write_text("--my_ip=127.0.0.1\n--osapi_compute_listen_port=http\n")
    result = subprocess.run([PYTHON, str(STACK / "bin" / "nova-api"), f"--flagfile={conf}"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (
        1, f"{conf}:2: --osapi_compute_listen_port must be an integer, not 'http'\n")


# Runs inside the private namespace: starts nova-api, asks its three servers, restarts it, stops it.
DRIVER = r"""
import json, os, signal, subprocess, sys, time, urllib.error, urllib.request
from nova import rpc
conf, log_path = sys.argv[1], sys.argv[2]
log = open(log_path, "wb")

def start():
    proc = subprocess.Popen([sys.executable, os.environ["NOVA_API"], "--flagfile=" + conf], stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while True:
        try:
            rpc.call("127.0.0.1", 8774, "list_servers", timeout=2)
            urllib.request.urlopen("http://127.0.0.1:9292/v1/images", timeout=2).read()
            urllib.request.urlopen("http://127.0.0.1:8775/", timeout=2).read()
            return proc
        except (rpc.RemoteError, OSError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("nova-api did not start; see " + log_path)
            time.sleep(0.1)

def status(path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:8775" + path, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""

out = {}
proc = start()
out["versions"] = status("/")
out["unknown_source"] = status("/latest/meta-data/instance-id")
out["servers"] = rpc.call("127.0.0.1", 8774, "list_servers")
out["flavors"] = [f["name"] for f in rpc.call("127.0.0.1", 8774, "list_flavors")]
out["images"] = json.loads(urllib.request.urlopen("http://127.0.0.1:9292/v1/images").read())
rpc.call("127.0.0.1", 8774, "create_keypair", name="k1",
         public_key="ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 t@t")
proc.send_signal(signal.SIGTERM)
out["rc_after_term"] = proc.wait(20)
proc = start()
out["keypairs_after_restart"] = [k["name"] for k in rpc.call("127.0.0.1", 8774, "list_keypairs")]
proc.send_signal(signal.SIGTERM)
proc.wait(20)
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists(PYTHON),
                    reason="needs root, unshare and /usr/bin/python3")
def test_daemon_serves_survives_restart_and_stops(tmp_path: Path) -> None:
    conf = tmp_path / "nova.conf"
    conf.write_text(f"--my_ip=127.0.0.1\n--host=controller-1\n--state_path={tmp_path / 'state'}\n")
    log = tmp_path / "nova-api.log"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2" "$3"', PYTHON, DRIVER,
         str(conf), str(log)],
        capture_output=True, text=True, timeout=90,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(STACK),
             "NOVA_API": str(STACK / "bin" / "nova-api")})
    assert result.returncode == 0, f"{result.stderr}\n--- nova-api log:\n{log.read_text()}"
    out = json.loads(result.stdout)
    assert out["versions"][0] == 200 and out["versions"][1].endswith("2009-04-04\n")
    assert out["unknown_source"] == [404, ""]
    assert out["servers"] == [] and out["images"] == []
    assert out["flavors"] == ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]
    assert out["rc_after_term"] == 0
    assert out["keypairs_after_restart"] == ["k1"]
    text = log.read_text()
    assert "compute API listening on 0.0.0.0:8774" in text and "metadata listening on 0.0.0.0:8775" in text
    assert "image store listening on 0.0.0.0:9292" in text
    assert "Metadata accept rule for 127.0.0.1:8775 in place" in text
    assert "Failed to get metadata for ip: 127.0.0.1" in text
    assert "Stopping: caught SIGTERM" in text
