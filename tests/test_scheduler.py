"""``--scheduler`` (issue 30): a malformed address, or one given without a cluster
backend, is one line naming the flag, exit status 2, found before the backend's package
is imported or any file is read; an address nothing answers at is one line too."""

from __future__ import annotations

import socket
import sys

import pytest

from dlsa.cli import main
from dlsa.engine.parallel import check_address, cluster
from dlsa.errors import DLSAInputError


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--backend", "dask", "--scheduler", "tcp://[::zz]:port"], "not an address of a dask"),
        (["--backend", "dask", "--scheduler", "tcp://[::zz]:8786"], "'::zz' does not appear"),
        (["--backend", "dask", "--scheduler", "tcp://head:99999"], "out of range"),
        (["--backend", "dask", "--scheduler", "tcp://:8786"], "host ''"),
        (["--backend", "dask", "--scheduler", "http://head:8786"], "unknown scheme 'http'"),
        (["--backend", "ray", "--scheduler", "tcp://head:6379"], "unknown scheme 'tcp'"),
        (["--scheduler", "tcp://head:8786"], "needs --backend dask or ray"),
        (["--backend", "loky", "--scheduler", "auto"], "needs --backend dask or ray"),
    ],
)
def test_a_bad_scheduler_is_one_line_before_anything_runs(
    flags, match, tmp_path, monkeypatch, capsys
):
    for package in ("distributed", "ray"):  # importing them now would fail
        monkeypatch.setitem(sys.modules, package, None)
    missing = tmp_path / "none.h5"  # reading it now would fail too
    assert main(["diagnose", "--train", str(missing), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"dlsa diagnose: error: --scheduler {flags[-1]}: ") and match in err


@pytest.mark.parametrize(
    "backend, address",
    [
        ("dask", "tcp://head:8786"),
        ("dask", "head:8786"),
        ("dask", "tls://10.0.0.1:8786"),
        ("dask", "tcp://[::1]:8786"),
        ("dask", "tcp://node-01.cluster.local"),
        ("ray", "ray://head:10001"),
        ("ray", "auto"),
        ("ray", "10.0.0.1:6379"),
    ],
)
def test_addresses_of_real_schedulers_pass(backend, address):
    check_address(backend, address)


def test_an_address_nothing_answers_at_is_one_line(tmp_path, capsys):
    pytest.importorskip("distributed")
    import dask

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(DLSAInputError, match="cannot connect"):
            with cluster("dask", address):
                pass
        assert main(["diagnose", "--train", str(tmp_path / "none.h5"), "--backend", "dask",
                     "--scheduler", address]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--scheduler {address}: cannot connect" in err
