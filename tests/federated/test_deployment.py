"""``sliceai federate server`` / ``client``: Flower's deployment engine on loopback.

A throw-away PKI (``sims.pki.make_pki``) gives the SuperLink its certificate; each site
has an OpenSSH EC key whose public half the server registers. Two sites train one round
under SecAgg+; a third SuperNode with a key the server does not know, and a fourth that
does not trust the server's certificate, are refused. Every process this test starts it
stops by its PID.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sims.pki import make_pki
from sliceai import cli
from sliceai.federated.local import get_arrays, network
from sliceai.forecast.checkpoint import load_model
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.scenarios import generate_scenario
from sliceai.traffic.longcsv import write_long_csv

pytestmark = pytest.mark.federated

SITES = ("hospital", "factory")


def _keys(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sliceai(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sliceai", "federate", *args], stdout=out, stderr=out
        )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _server_args(tmp_path: Path, pki_dir: Path, port: int, sites: list[str]) -> list[str]:
    args = ["server", "--listen", f"127.0.0.1:{port}", "--out", str(tmp_path / "model")]
    args += ["--tls-cert", str(pki_dir / "server.crt"), "--tls-key", str(pki_dir / "server.key")]
    args += ["--ca", str(pki_dir / "ca.crt")]
    for site in sites:
        args += ["--site", site]
    return args


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_server_and_two_clients_over_tls_write_a_checkpoint(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, {})
    (tmp_path / "other").mkdir()
    other_ca = make_pki(tmp_path / "other", {})
    keys = {name: _keys(tmp_path, name) for name in (*SITES, "intruder")}
    for k, name in enumerate(SITES):
        write_long_csv(
            generate_scenario(name, 700 + k, days=1.0, interval_s=60.0), tmp_path / f"{name}.csv"
        )
    port = _port()
    registered = [f"{name}={keys[name][1]}" for name in SITES]
    server_args = _server_args(tmp_path, tmp_path, port, registered)
    server_args += ["--rounds", "1", "--local-steps", "2", "--batch-size", "16", "--seed", "5"]
    server_args += ["--timeout", "420", "--flower-log", str(tmp_path / "flower.log")]

    def client(log: str, key: str, site: str, ca: Path, *extra: str) -> subprocess.Popen[bytes]:
        args = ["client", "--site", f"{site}={tmp_path / f'{site}.csv'}"]
        args += ["--superlink", f"127.0.0.1:{port}", "--ca", str(ca), "--key", str(keys[key][0])]
        return _sliceai([*args, *extra], tmp_path / f"{log}.log")

    started = time.monotonic()
    server = _sliceai(server_args, tmp_path / "server.log")
    procs = [server]
    try:
        # the sites join once the server has registered their keys (a SuperNode that
        # comes earlier is refused like an unknown one)
        while "waiting for them" not in (tmp_path / "server.log").read_text():
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() - started < 240
            time.sleep(0.5)
        procs += [client(name, name, name, pki.ca) for name in SITES]
        # a key the server never registered, under the right CA; and a registered key
        # that does not trust the server's certificate (another CA)
        intruder = client("intruder", "intruder", "hospital", pki.ca)
        untrusting = client("untrusting", "hospital", "hospital", other_ca.ca, "--max-wait", "15")
        procs += [intruder, untrusting]
        assert intruder.wait(240) == 1
        assert untrusting.wait(240) == 1
        assert server.wait(560) == 0, (tmp_path / "server.log").read_text()
        took = time.monotonic() - started
    finally:
        _stop(procs)
    server_log = (tmp_path / "server.log").read_text()
    assert "registered" in server_log
    assert "checkpoint in" in server_log
    assert "refused" in (tmp_path / "intruder.log").read_text()
    flower_log = (tmp_path / "flower.log").read_text()
    assert "No SuperNode found with the given public key" in flower_log

    model, meta = load_model(tmp_path / "model")
    assert model.config.members == 5  # the federated network joined to the bundled four
    assert meta["federated"]["runtime"] == "deployment"
    assert meta["federated"]["secure_aggregation"] is True
    assert meta["federated"]["sites"] == list(SITES)
    tuned = ForecastPipeline.load(tmp_path / "model", device="cpu")
    bundled = ForecastPipeline.load(None, device="cpu")
    after = get_arrays(network(tuned, "main", 0))
    before = get_arrays(network(bundled, "main", 0))
    assert max(float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True)) > 1e-5
    q = tuned.quantiles(np.full((1, 64), 1e6), 4, np.array([0.1, 0.5, 0.9]), interval_s=60.0)
    assert np.all(np.isfinite(q))
    print(f"deployment: 1 round, 2 sites, SecAgg+: {took:.0f} s")


def test_bad_server_and_client_input_is_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_pki(tmp_path, {})
    private, public = _keys(tmp_path, "a")
    _, public_b = _keys(tmp_path, "b")
    (tmp_path / "rsa.pub").write_text("ssh-rsa AAAA not a key\n")
    good = [f"a={public}", f"b={public_b}"]
    cases = [
        _server_args(tmp_path, tmp_path, 9, good[:1]),  # one site
        _server_args(tmp_path, tmp_path, 9, [good[0], f"b={tmp_path / 'missing.pub'}"]),
        _server_args(tmp_path, tmp_path, 9, [good[0], f"b={tmp_path / 'rsa.pub'}"]),
        _server_args(tmp_path, tmp_path, 9, [good[0], f"b={private}"]),  # a private key
        _server_args(tmp_path, tmp_path, 9, [good[0], f"a={public_b}"]),  # same name
        [*_server_args(tmp_path, tmp_path, 9, good), "--listen", "localhost"],
        [*_server_args(tmp_path, tmp_path, 9, good), "--proximal-mu", "-1"],
        [*_server_args(tmp_path, tmp_path, 9, good), "--interval", "fast"],
        [*_server_args(tmp_path, tmp_path, 9, good), "--member", "9"],
        [*_server_args(tmp_path, tmp_path / "nowhere", 9, good)],  # no certificate files
    ]
    trace = tmp_path / "t.csv"
    write_long_csv(generate_scenario("hospital", 1, days=0.2, interval_s=60.0), trace)
    client = ["client", "--superlink", "127.0.0.1:9", "--ca", str(tmp_path / "ca.crt")]
    cases += [
        [*client, "--site", f"a={trace}", "--key", str(public)],  # a public key
        [*client, "--site", f"a={tmp_path / 'none.csv'}", "--key", str(private)],
        [*client, "--site", f"a={public}", "--key", str(private)],  # not a trace
        [*client, "--site", f"a={trace}", "--key", str(private), "--superlink", "x"],
    ]
    for argv in cases:
        assert cli.main(["federate", *argv]) == 2, argv
        assert "sliceai" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
