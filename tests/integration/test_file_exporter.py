# SPDX-License-Identifier: Apache-2.0
"""exporter.protocol: file (the default): items land in
<exporter.file.path>/{traces,metrics,logs}.jsonl as OTLP/JSON lines whose
content matches what was sent."""

import json
import os

import pytest

import itlib
import otlp_pb


def read_jsonl(path, signal):
    """All complete lines of a .jsonl file -> records. Every line must be one
    OTLP/JSON TracesData/MetricsData/LogsData object."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    recs = []
    lines = data.split(b"\n")
    lines.pop()  # "" after the last newline, or a line still being written
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as e:
            raise AssertionError("%s:%d is not JSON: %s" % (path, ln, e))
        msg = otlp_pb.parse_otlp_json(doc, otlp_pb.request_class(signal))
        recs.extend(otlp_pb.flatten(signal, msg))
    return recs


def test_file_exporter_writes_otlp_json_lines(start_gateway, tmp_path):
    gw = start_gateway()  # no upstream: protocol file
    assert gw.config["exporter"]["protocol"] == "file"
    outdir = gw.config["exporter"]["file"]["path"]
    sent = {}
    for signal in ("traces", "metrics", "logs"):
        reqs = [itlib.make_request(signal, 8, "file-a"), itlib.make_request(signal, 5, "file-b")]
        r = gw.send(signal, reqs[0], "proto")
        assert r.status == 200, r
        r = gw.send(signal, reqs[1], "json", use_gzip=True)
        assert r.status == 200, r
        sent[signal] = [x for q in reqs for x in itlib.records_of(signal, q)]
    for signal, expected in sent.items():
        path = os.path.join(outdir, signal + ".jsonl")
        itlib.wait_for(lambda: len(read_jsonl(path, signal)) >= len(expected), 10,
                       what="%d %s in %s" % (len(expected), signal, path))
        itlib.assert_same_items(expected, read_jsonl(path, signal), what=signal)
    assert set(os.listdir(outdir)) >= {"traces.jsonl", "metrics.jsonl", "logs.jsonl"}
    # After a clean stop the files end with a complete line.
    assert gw.stop() == 0
    for signal in sent:
        with open(os.path.join(outdir, signal + ".jsonl"), "rb") as f:
            assert f.read().endswith(b"\n")


def test_file_exporter_default_path_under_data_dir(start_gateway, tmp_path):
    gw = start_gateway(exporter={"file": {"path": ""}})
    req = itlib.make_logs(3, "default-path")
    assert gw.send("logs", req).status == 200
    path = os.path.join(gw.config["service"]["data_dir"], "export", "logs.jsonl")
    itlib.wait_for(lambda: len(read_jsonl(path, "logs")) >= 3, 10, what=path)
    itlib.assert_same_items(itlib.records_of("logs", req), read_jsonl(path, "logs"))


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_file_exporter_with_js_sdk(js_ready, start_gateway, tmp_path, signal):
    gw = start_gateway()
    out = str(tmp_path / "summary.json")
    p, summary = itlib.run_js(["--endpoint", "http://%s:%d" % (itlib.LOOPBACK, gw.http_port),
                               "--signal", signal, "--count", "25", "--out", out])
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    path = os.path.join(gw.config["exporter"]["file"]["path"], signal + ".jsonl")
    itlib.wait_for(lambda: len(read_jsonl(path, signal)) >= 25, 10, what=path)
    itlib.assert_same_items(itlib.summary_records(summary), read_jsonl(path, signal))
