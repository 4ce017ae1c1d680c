# SPDX-License-Identifier: Apache-2.0
"""The gateway exporting over OTLP/gRPC (exporter.protocol: grpc) to a real gRPC
server, tests/unit/grpc_upstream.py on python3-grpcio: curl posts OTLP/HTTP,
every item arrives upstream exactly once and identical; UNAVAILABLE is retried,
INVALID_ARGUMENT dropped and counted, partial success counted, and an upstream
restart only delays delivery."""

import glob
import json
import os
import subprocess
import sys
import time

import pytest

import itlib
import otlp_pb

GRPC_UPSTREAM = os.path.join(itlib.REPO_ROOT, "tests", "unit", "grpc_upstream.py")


def _grpc_python():
    """An interpreter with python3-grpcio (the Debian one; pyenv's may lack it)."""
    for cand in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(cand) and subprocess.run(
                [cand, "-c", "import grpc, google.protobuf"], capture_output=True).returncode == 0:
            return cand
    return None


class GrpcUpstream:
    """grpc_upstream.py as a child process; records every call in its own directory."""

    def __init__(self, workdir, specs=(), port=0, name="grpc-up"):
        self.workdir = str(workdir)
        self.specs = list(specs)
        self.port = port
        self.rec = os.path.join(self.workdir, name + "-rec")
        self.log = os.path.join(self.workdir, name + ".log")
        self.proc = None
        os.makedirs(self.rec, exist_ok=True)

    @property
    def endpoint(self):
        return "http://%s:%d" % (itlib.LOOPBACK, self.port)

    def start(self, timeout=20.0):
        py = _grpc_python()
        if py is None:
            pytest.skip("python3-grpcio is not installed")
        # A restarted server numbers its records from 0000: keep each run's apart.
        rec = os.path.join(self.rec, "run%d" % len(os.listdir(self.rec)))
        os.makedirs(rec)
        cmd = [py, GRPC_UPSTREAM, "--port", str(self.port), "--record-dir", rec]
        for s in self.specs:
            cmd += ["--respond", s]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                         cwd=self.workdir)
        itlib._register(self.proc)
        line = itlib._readline_timeout(self.proc.stdout, timeout)
        if not line:
            self.stop()
            raise RuntimeError("grpc_upstream.py did not start; see %s" % self.log)
        self.port = json.loads(line)["port"]
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def calls(self):
        """[(meta dict, metadata dict, body bytes)] of every call answered so far."""
        out = []
        for meta_path in sorted(glob.glob(os.path.join(self.rec, "run*", "*.meta"))):
            meta, md = {}, {}
            with open(meta_path) as f:
                for line in f.read().splitlines():
                    k, _, v = line.partition(" ")
                    if k == "m":
                        mk, _, mv = v.partition(" ")
                        md[mk] = mv
                    else:
                        meta[k] = v
            with open(meta_path[:-len(".meta")] + ".body", "rb") as f:
                out.append((meta, md, f.read()))
        return out

    def records(self, signal, answered_ok=None):
        """Items of every call for `signal` (of the calls answered OK when
        `answered_ok` selects them by call index)."""
        out = []
        for i, (meta, _, body) in enumerate(self.calls()):
            if meta["signal"] != signal or (answered_ok is not None and not answered_ok(i)):
                continue
            req = otlp_pb.request_class(signal)()
            req.ParseFromString(body)
            out.extend(itlib.records_of(signal, req))
        return out

    def items(self, signal):
        return sum(int(m["items"]) for m, _, _ in self.calls() if m["signal"] == signal)


@pytest.fixture
def grpc_upstream(tmp_path):
    started = []

    def start(specs=(), port=0):
        u = GrpcUpstream(tmp_path, specs, port, name="grpc-up%d" % len(started))
        started.append(u)
        return u.start()

    try:
        yield start
    finally:
        for u in started:
            u.stop()


def grpc_gateway(start_gateway, up, **exporter):
    ex = {"protocol": "grpc", "endpoint": up.endpoint, "compression": "gzip",
          "headers": {"X-Tenant": "acme"}, "tls": {"insecure": True}}  # h2c upstream
    ex.update(exporter)
    return start_gateway(None, exporter=ex)


def _post(gw, signal, req, tmp_path, name):
    body, headers = itlib.encode_request(req, "proto", False)
    status, _, resp, err = itlib.curl_post(gw.http_port, "/v1/" + signal, body, headers,
                                           tmp_path, name=name)
    assert status == 200, (status, resp, err)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_every_signal_arrives_once_and_identical(start_gateway, grpc_upstream, tmp_path,
                                                 compression):
    up = grpc_upstream()
    gw = grpc_gateway(start_gateway, up, compression=compression)
    sent = {"traces": [itlib.make_traces(30, "gt%d" % i) for i in range(2)],
            "metrics": [itlib.make_metrics(18, "gm")],
            "logs": [itlib.make_logs(25, "gl%d" % i) for i in range(2)]}
    for signal, reqs in sent.items():
        for i, req in enumerate(reqs):
            _post(gw, signal, req, tmp_path, "%s%d" % (signal, i))
    want = {s: [r for q in reqs for r in itlib.records_of(s, q)] for s, reqs in sent.items()}
    for signal, recs in want.items():
        itlib.wait_for(lambda: len(up.records(signal)) >= len(recs), 20,
                       what=lambda: "%d %s at the gRPC upstream (have %d)"
                       % (len(recs), signal, len(up.records(signal))))
    time.sleep(0.5)  # late duplicates would show now
    for signal, recs in want.items():
        itlib.assert_same_items(recs, up.records(signal), what=signal)
    for meta, md, _ in up.calls():
        assert meta["method"].startswith("/opentelemetry.proto.collector."), meta
        assert md.get("x-tenant") == "acme", md
        assert "otlp-service/" in md.get("user-agent", ""), md
        assert 0 < int(meta["timeout_ms"]) <= 3000, meta  # exporter.timeout_ms of base_config
    m = gw.metrics()
    assert m.value("otlp_spans_exported_total") == 60
    assert m.value("otlp_log_records_exported_total") == 50
    assert m.value("otlp_spans_dropped_total") == 0


def test_unavailable_is_retried_and_delivered_once(start_gateway, grpc_upstream, tmp_path):
    up = grpc_upstream(["unavailable", "unavailable", "ok"])
    gw = grpc_gateway(start_gateway, up)
    req = itlib.make_traces(12, "gretry")
    _post(gw, "traces", req, tmp_path, "r")
    itlib.wait_for(lambda: len(up.calls()) >= 3, 20, what="three calls upstream")
    time.sleep(0.5)
    calls = up.calls()
    assert len(calls) == 3, [c[0] for c in calls]
    # the same batch three times; only the third was accepted
    itlib.assert_same_items(itlib.records_of("traces", req),
                            up.records("traces", answered_ok=lambda i: i == 2))
    m = gw.metrics()
    assert m.value("otlp_export_requests_total", signal="traces", result="retry") == 2
    assert m.value("otlp_spans_exported_total") == 12


def test_invalid_argument_is_dropped_not_retried(start_gateway, grpc_upstream, tmp_path):
    up = grpc_upstream(["invalid_argument"])
    gw = grpc_gateway(start_gateway, up)
    _post(gw, "logs", itlib.make_logs(7, "gbad"), tmp_path, "r")
    itlib.wait_for(lambda: gw.metrics().value("otlp_log_records_dropped_total") >= 7, 15,
                   what="7 dropped log records")
    time.sleep(1.0)  # several retry intervals: a retry would show by now
    assert len(up.calls()) == 1
    m = gw.metrics()
    assert m.value("otlp_log_records_dropped_total", reason="upstream_rejected") == 7


def test_partial_success_is_counted(start_gateway, grpc_upstream, tmp_path):
    up = grpc_upstream(["ok;partial=2;msg=two too old"])
    gw = grpc_gateway(start_gateway, up)
    _post(gw, "traces", itlib.make_traces(5, "gpartial"), tmp_path, "r")
    itlib.wait_for(lambda: gw.metrics().value("otlp_spans_dropped_total",
                                              reason="upstream_partial") >= 2, 15,
                   what="2 spans dropped as upstream_partial")
    assert len(up.calls()) == 1


def test_upstream_restart_delays_but_loses_nothing(start_gateway, grpc_upstream, tmp_path):
    up = grpc_upstream()
    gw = grpc_gateway(start_gateway, up)
    first = itlib.make_traces(6, "gbefore")
    _post(gw, "traces", first, tmp_path, "a")
    itlib.wait_for(lambda: len(up.records("traces")) >= 6, 15, what="6 spans before restart")
    up.stop()
    second = itlib.make_traces(8, "gduring")
    _post(gw, "traces", second, tmp_path, "b")
    time.sleep(1.0)  # the gateway fails to connect and schedules retries
    up.start()       # same port, fresh record directory
    itlib.wait_for(lambda: len(up.records("traces")) >= 14, 20,
                   what="14 spans after the restart")
    time.sleep(0.5)
    itlib.assert_same_items(itlib.records_of("traces", first) + itlib.records_of("traces", second),
                            up.records("traces"))
    assert gw.metrics().value("otlp_spans_dropped_total") == 0


def test_batch_above_max_msg_goes_out_in_parts(start_gateway, grpc_upstream, tmp_path):
    """exporter.grpc_max_msg_bytes (64 KiB here): a ~250 KB batch goes out as
    several Export calls, each at most the limit and each a valid request
    with its spans under their own Resource and Scope. The second call is
    answered UNAVAILABLE: only the parts not yet delivered are sent again,
    so every span arrives exactly once."""
    up = grpc_upstream(["ok", "unavailable", "ok"])
    gw = grpc_gateway(start_gateway, up, compression="none", grpc_max_msg_bytes=64 * 1024)
    req = itlib.make_traces(600, "gsplit")
    assert req.ByteSize() > 3 * 64 * 1024
    _post(gw, "traces", req, tmp_path, "big")
    itlib.wait_for(lambda: gw.metrics().value("otlp_spans_exported_total") >= 600, 20,
                   what="600 spans exported")
    time.sleep(0.5)
    calls = up.calls()
    assert len(calls) >= 5, len(calls)  # >= 4 parts, one of them twice
    for meta, _, body in calls:
        assert len(body) <= 64 * 1024, len(body)
    itlib.assert_same_items(itlib.records_of("traces", req),
                            up.records("traces", answered_ok=lambda i: i != 1))
    m = gw.metrics()
    assert m.value("otlp_spans_exported_total") == 600
    assert m.value("otlp_spans_dropped_total") == 0
    assert m.value("otlp_export_requests_total", signal="traces", result="retry") == 1
