# SPDX-License-Identifier: Apache-2.0
"""Helpers for the otlp-service integration tests: processes (the gateway, the
test upstream, the JS client), HTTP and curl, request builders, Prometheus
text parsing and the "what was sent == what arrived" comparison."""

import collections
import gzip
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import otlp_pb
from otlp_pb import common_pb2, logs_pb2, metrics_pb2, resource_pb2, trace_pb2

HERE = otlp_pb.HERE
REPO_ROOT = otlp_pb.REPO_ROOT
JS_DIR = os.path.join(HERE, "js")
LOOPBACK = "127.0.0.1"

# Every process a test starts is registered here and killed at exit, whatever
# happened to the test that started it.
_PROCS = []
_PROCS_LOCK = threading.Lock()


def _register(p):
    with _PROCS_LOCK:
        _PROCS.append(p)


def kill_all():
    with _PROCS_LOCK:
        procs = list(_PROCS)
        _PROCS.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


def gateway_bin():
    b = os.environ.get("OTLP_SERVICE_BIN") or os.path.join(REPO_ROOT, "build", "app",
                                                           "otlp-service")
    return os.path.abspath(b)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Fatal(AssertionError):
    """Raised inside a wait_for() condition to stop waiting (e.g. the process died)."""


def wait_for(fn, timeout=10.0, interval=0.05, what="condition"):
    """Poll fn() until it returns a truthy value; return it. AssertionError on
    timeout; `what` may be a callable, evaluated then, to describe the state.
    A Fatal raised by fn() ends the wait at once."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except Fatal:
            raise
        except Exception as e:  # noqa: BLE001 - keep polling through transient errors
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            if callable(what):
                what = what()
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body

    def __repr__(self):
        return "<Resp %s %r %r>" % (self.status, self.headers, self.body[:200])


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    c = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


def get_json(port, path, timeout=5.0):
    with urllib.request.urlopen("http://%s:%d%s" % (LOOPBACK, port, path),
                                timeout=timeout) as r:
        return json.loads(r.read())


def post_json(port, path, obj, timeout=5.0):
    req = urllib.request.Request("http://%s:%d%s" % (LOOPBACK, port, path),
                                 data=json.dumps(obj).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def read_http_response(sock_file):
    """Read one HTTP/1.1 response (Content-Length or chunked) from a socket file.
    Returns Resp; status 100 responses are returned too (caller loops)."""
    line = sock_file.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = sock_file.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int(sock_file.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while sock_file.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += sock_file.read(size)
            sock_file.readline()
    elif "content-length" in headers:
        body = sock_file.read(int(headers["content-length"]))
    elif status >= 200 and status not in (204, 304):
        body = sock_file.read()  # until close
    return Resp(status, headers, body)


def raw_exchange(port, data, n_responses=1, timeout=5.0, shutdown_write=False):
    """Send raw bytes, read n responses (skipping 1xx). Returns list of Resp."""
    out = []
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        f = s.makefile("rb")
        while len(out) < n_responses:
            r = read_http_response(f)
            if 100 <= r.status < 200:
                continue
            out.append(r)
    return out


def curl(args, timeout=30):
    """Run the real curl binary. Returns CompletedProcess (text)."""
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout)] + list(args)
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 5)


CONTENT_TYPES = {"proto": "application/x-protobuf", "json": "application/json"}


def encode_request(msg, encoding, use_gzip):
    """Export*ServiceRequest -> (body bytes, headers)."""
    body = msg.SerializeToString() if encoding == "proto" else otlp_pb.message_to_otlp_json(
        msg).encode()
    headers = {"Content-Type": CONTENT_TYPES[encoding]}
    if use_gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def curl_post(port, path, body, headers, tmp_path, extra_args=(), name="req"):
    """POST `body` with curl from a file; returns (status, resp headers, resp body, stderr)."""
    bfile = tmp_path / ("%s.body" % name)
    bfile.write_bytes(body)
    hfile = tmp_path / ("%s.resp-headers" % name)
    ofile = tmp_path / ("%s.resp-body" % name)
    args = ["-X", "POST", "http://%s:%d%s" % (LOOPBACK, port, path),
            "--data-binary", "@%s" % bfile, "-D", str(hfile), "-o", str(ofile),
            "-w", "%{http_code}"]
    for k, v in headers.items():
        args += ["-H", "%s: %s" % (k, v)]
    args += list(extra_args)
    p = curl(args)
    assert p.returncode == 0, "curl failed rc=%d: %s" % (p.returncode, p.stderr.decode())
    status = int(p.stdout.decode().strip() or 0)
    resp_headers = {}
    for line in hfile.read_text("latin-1").splitlines():
        if line.startswith("HTTP/"):
            resp_headers = {"_status_line": line}  # keep only the final response's headers
            continue
        k, sep, v = line.partition(":")
        if sep:
            resp_headers[k.strip().lower()] = v.strip()
    return status, resp_headers, ofile.read_bytes(), p.stderr.decode("latin-1")


def decode_response(signal, resp_body, content_type):
    ct = (content_type or "").split(";")[0].strip().lower()
    cls = otlp_pb.response_class(signal)
    if ct == "application/json":
        return otlp_pb.parse_otlp_json(resp_body or b"{}", cls)
    m = cls()
    m.ParseFromString(resp_body)
    return m


def decode_rpc_status(body, content_type):
    """google.rpc.Status (protobuf or JSON) -> (code, message); raises on junk."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct == "application/json":
        d = json.loads(body)
        return d.get("code", 0), d.get("message", "")
    code, msg, i = 0, "", 0
    while i < len(body):
        key, i = _read_varint(body, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(body, i)
            if field == 1:
                code = v
        elif wt == 2:
            n, i = _read_varint(body, i)
            if field == 2:
                msg = body[i:i + n].decode("utf-8")
            i += n
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return code, msg


def _read_varint(b, i):
    shift = v = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v, i
        shift += 7


# ---------------------------------------------------------------------------
# Request builders (python protobuf): varied content of every field type
# ---------------------------------------------------------------------------

def _kv(key, value):
    kv = common_pb2.KeyValue(key=key)
    _set_any(kv.value, value)
    return kv


def _set_any(av, value):
    if isinstance(value, bool):
        av.bool_value = value
    elif isinstance(value, int):
        av.int_value = value
    elif isinstance(value, float):
        av.double_value = value
    elif isinstance(value, str):
        av.string_value = value
    elif isinstance(value, bytes):
        av.bytes_value = value
    elif isinstance(value, list):
        av.array_value.SetInParent()
        for v in value:
            _set_any(av.array_value.values.add(), v)
    elif isinstance(value, dict):
        av.kvlist_value.SetInParent()
        for k, v in value.items():
            av.kvlist_value.values.append(_kv(k, v))
    else:
        raise TypeError(value)


def _attrs(i, tag):
    return [_kv("seq", i), _kv("tag", tag), _kv("str", "value-%d" % i),
            _kv("utf8", "h\u00e9llo \u2713 \U0001f600 %d" % i), _kv("dbl", i + 0.5),
            _kv("neg", -7 - i), _kv("big", 2 ** 62 + i), _kv("flag", i % 2 == 0),
            _kv("bytes", bytes([i % 256, 0, 255])), _kv("arr", ["x", i, 1.25, True]),
            _kv("map", {"inner": "v%d" % i, "n": i, "deep": {"list": [1, 2]}}),
            _kv("empty", "")]


def _resource(idx, tag, extra=None):
    r = resource_pb2.Resource()
    r.attributes.extend([_kv("service.name", "curl-it-%d" % idx), _kv("test.tag", tag),
                         _kv("host.name", "h%d" % idx)])
    for k, v in (extra or {}).items():
        r.attributes.append(_kv(k, v))
    return r


def _rid(n, rnd):
    return bytes(rnd.getrandbits(8) for _ in range(n))


def make_traces(n, tag="t", seed=None, resource_extra=None, n_resources=2):
    """ExportTraceServiceRequest with n spans spread over resources and scopes."""
    rnd = random.Random(seed if seed is not None else time.time_ns())
    req = otlp_pb.trace_service_pb2.ExportTraceServiceRequest()
    base = time.time_ns()
    per = [n // n_resources + (1 if i < n % n_resources else 0) for i in range(n_resources)]
    seq = 0
    for ri, cnt in enumerate(per):
        if cnt == 0:
            continue
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(_resource(ri, tag, resource_extra))
        rs.schema_url = "https://opentelemetry.io/schemas/1.21.0"
        scopes = [rs.scope_spans.add(), rs.scope_spans.add()] if cnt > 1 else [rs.scope_spans.add()]
        for si, ss in enumerate(scopes):
            ss.scope.name = "scope-%d" % si
            ss.scope.version = "1.%d" % si
            ss.scope.attributes.append(_kv("scope.attr", si))
        trace_id = _rid(16, rnd)
        root = None
        for k in range(cnt):
            sp = scopes[k % len(scopes)].spans.add()
            sp.trace_id = trace_id
            sp.span_id = _rid(8, rnd)
            if root is not None:
                sp.parent_span_id = root
            else:
                root = sp.span_id
            sp.trace_state = "vendor=v%d" % seq if seq % 3 == 0 else ""
            sp.flags = 0x101 if seq % 2 else 0
            sp.name = "%s-span-%d" % (tag, seq)
            sp.kind = seq % 6
            sp.start_time_unix_nano = base + seq * 1000 + 1
            sp.end_time_unix_nano = base + seq * 1000 + 999
            sp.attributes.extend(_attrs(seq, tag))
            sp.dropped_attributes_count = seq % 2
            for e in range(seq % 3):
                ev = sp.events.add(time_unix_nano=base + e, name="ev-%d" % e)
                ev.attributes.append(_kv("ev.n", e))
            if seq % 2:
                ln = sp.links.add(trace_id=_rid(16, rnd), span_id=_rid(8, rnd),
                                  trace_state="x=y")
                ln.attributes.append(_kv("link.n", seq))
            sp.status.code = seq % 3
            if sp.status.code == 2:
                sp.status.message = "error %d" % seq
            seq += 1
    return req


def make_metrics(n, tag="m", resource_extra=None):
    """ExportMetricsServiceRequest with n data points: sum, gauge, histogram,
    exponential histogram and summary, int and double values."""
    req = otlp_pb.metrics_service_pb2.ExportMetricsServiceRequest()
    base = time.time_ns()
    rm = req.resource_metrics.add()
    rm.resource.CopyFrom(_resource(0, tag, resource_extra))
    sm = rm.scope_metrics.add()
    sm.scope.name = "metrics-scope"
    sm.scope.version = "2.0"
    kinds = ["sum_int", "gauge_double", "histogram", "sum_double", "gauge_int", "summary"]
    metrics = {}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind not in metrics:
            m = sm.metrics.add(name="%s.%s" % (tag, kind), description="d " + kind,
                               unit="ms" if "hist" in kind else "1")
            if kind.startswith("sum"):
                m.sum.aggregation_temporality = 2
                m.sum.is_monotonic = kind == "sum_int"
            elif kind.startswith("gauge"):
                m.gauge.SetInParent()
            elif kind == "histogram":
                m.histogram.aggregation_temporality = 1
            else:
                m.summary.SetInParent()
            metrics[kind] = m
        m = metrics[kind]
        a = [_kv("seq", i), _kv("tag", tag), _kv("route", "/r%d" % (i % 3)), _kv("d", i * 0.5)]
        if kind.startswith("sum") or kind.startswith("gauge"):
            dp = (m.sum if kind.startswith("sum") else m.gauge).data_points.add()
            if kind.endswith("int"):
                dp.as_int = -5 + i * 1000
            else:
                dp.as_double = i * 1.5 + 0.125
            dp.flags = 0
        elif kind == "histogram":
            dp = m.histogram.data_points.add(count=6 + i, sum=12.5 + i, min=0.5, max=9.0 + i)
            dp.bucket_counts.extend([1, 2, 3 + i])
            dp.explicit_bounds.extend([1.0, 5.0])
        else:
            dp = m.summary.data_points.add(count=3 + i, sum=7.5 + i)
            q = dp.quantile_values.add(quantile=0.5, value=2.0 + i)
            q = dp.quantile_values.add(quantile=0.99, value=7.0 + i)
            del q
        dp.attributes.extend(a)
        dp.start_time_unix_nano = base
        dp.time_unix_nano = base + 1000 + i
    return req


def make_logs(n, tag="l", seed=None, resource_extra=None):
    rnd = random.Random(seed if seed is not None else time.time_ns())
    req = otlp_pb.logs_service_pb2.ExportLogsServiceRequest()
    base = time.time_ns()
    rl = req.resource_logs.add()
    rl.resource.CopyFrom(_resource(0, tag, resource_extra))
    scopes = [rl.scope_logs.add(), rl.scope_logs.add()]
    for si, sl in enumerate(scopes):
        sl.scope.name = "log-scope-%d" % si
    for i in range(n):
        lr = scopes[i % 2].log_records.add()
        lr.time_unix_nano = base + i
        lr.observed_time_unix_nano = base + 10 + i
        lr.severity_number = 1 + (i * 4) % 24
        lr.severity_text = "SEV%d" % lr.severity_number
        if i % 3 == 0:
            lr.body.string_value = "log %s %d \u2713" % (tag, i)
        elif i % 3 == 1:
            _set_any(lr.body, {"msg": "structured", "i": i, "list": [1, "a", False]})
        else:
            lr.body.bytes_value = b"\x00\x01binary" + bytes([i % 256])
        lr.attributes.extend(_attrs(i, tag))
        if i % 2:
            lr.trace_id = _rid(16, rnd)
            lr.span_id = _rid(8, rnd)
            lr.flags = 1
    return req


BUILDERS = {"traces": make_traces, "metrics": make_metrics, "logs": make_logs}


def make_request(signal, n, tag, **kw):
    return BUILDERS[signal](n, tag=tag, **kw)


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def records_of(signal, req):
    return otlp_pb.flatten(signal, req)


def summary_records(summary):
    """Records for every item the JS client exported (its OTLP/JSON batches)."""
    sig = summary["signal"]
    out = []
    for b in summary["batches"]:
        out.extend(otlp_pb.flatten(sig, otlp_pb.parse_otlp_json(b, otlp_pb.request_class(sig))))
    return out


def assert_same_items(expected, actual, ignore_resource_keys=(), what="items"):
    """expected/actual: lists of records. Each expected item must arrive exactly
    once with identical content, and nothing else may arrive."""
    e = collections.Counter(otlp_pb.freeze(otlp_pb.canonical_record(r, ignore_resource_keys))
                            for r in expected)
    a = collections.Counter(otlp_pb.freeze(otlp_pb.canonical_record(r, ignore_resource_keys))
                            for r in actual)
    if e == a:
        return
    missing = e - a
    extra = a - e
    dup = {k: v for k, v in a.items() if v > 1 and e.get(k, 0) < v}
    msg = ["%s differ: expected %d, got %d (missing %d, unexpected %d, duplicated %d)"
           % (what, sum(e.values()), sum(a.values()), sum(missing.values()),
              sum(extra.values()), len(dup))]
    # Pair missing and unexpected items by identity key to show field differences.
    by_key = {}
    for r in actual:
        by_key.setdefault(otlp_pb.record_key(r), []).append(r)
    shown = 0
    for r in expected:
        fr = otlp_pb.freeze(otlp_pb.canonical_record(r, ignore_resource_keys))
        if fr not in missing or shown >= 3:
            continue
        shown += 1
        cands = by_key.get(otlp_pb.record_key(r), [])
        exp_c = otlp_pb.canonical_record(r, ignore_resource_keys)
        if not cands:
            msg.append("MISSING %r" % (otlp_pb.record_key(r),))
            continue
        got_c = otlp_pb.canonical_record(cands[0], ignore_resource_keys)
        msg.append("DIFFERENT %r:\n%s" % (otlp_pb.record_key(r), _diff(exp_c, got_c)))
    if dup:
        msg.append("DUPLICATED (first 3): %r" % (list(dup.items())[:3],))
    if extra and not missing:
        msg.append("UNEXPECTED (first 2): %r" % (list(extra)[:2],))
    raise AssertionError("\n".join(msg))


def _diff(e, a, path=""):
    out = []
    if isinstance(e, dict) and isinstance(a, dict):
        for k in sorted(set(e) | set(a), key=str):
            if e.get(k, "<absent>") != a.get(k, "<absent>"):
                out.append(_diff(e.get(k, "<absent>"), a.get(k, "<absent>"), path + "." + str(k)))
        return "\n".join(out)
    return "  %s: sent %r, got %r" % (path, e, a)


# ---------------------------------------------------------------------------
# Prometheus text format
# ---------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


class Metrics:
    """Parsed /metrics: samples, TYPE and HELP lines."""

    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, labels dict, value)
        self.types = {}
        self.helps = {}
        for ln, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise ValueError("line %d is not a Prometheus sample: %r" % (ln, line))
            labels = {}
            if m.group(3):
                pos = 0
                s = m.group(3)
                while pos < len(s):
                    lm = _LABEL_RE.match(s, pos)
                    if not lm:
                        raise ValueError("line %d: bad labels %r" % (ln, s))
                    labels[lm.group(1)] = (lm.group(2).replace(r"\"", '"').replace(r"\n", "\n")
                                           .replace("\\\\", "\\"))
                    pos = lm.end()
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def names(self):
        return {n for n, _, _ in self.samples}

    def get(self, name, **labels):
        """Sum of all samples of `name` whose labels include `labels`; None if no sample."""
        vals = [v for n, lab, v in self.samples
                if n == name and all(lab.get(k) == str(x) for k, x in labels.items())]
        return sum(vals) if vals else None

    def value(self, name, **labels):
        v = self.get(name, **labels)
        return 0.0 if v is None else v

    def series(self, name):
        return [(lab, v) for n, lab, v in self.samples if n == name]


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class Upstream:
    """The test upstream (upstream.py) as a child process."""

    def __init__(self, workdir, port=0):
        self.workdir = str(workdir)
        self.port = port
        self.control_port = 0
        self.proc = None

    @property
    def url(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    def start(self, timeout=15.0):
        log = open(os.path.join(self.workdir, "upstream.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "upstream.py"), "--port", str(self.port),
             "--control-port", "0"], stdout=subprocess.PIPE, stderr=log, cwd=self.workdir)
        _register(self.proc)
        log.close()
        line = _readline_timeout(self.proc.stdout, timeout)
        if not line:
            self.stop()
            raise RuntimeError("upstream did not start; see %s/upstream.log" % self.workdir)
        info = json.loads(line)
        self.port = info["port"]
        self.control_port = info["control_port"]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    # control API
    def mode(self, **mode):
        post_json(self.control_port, "/mode", mode)

    def queue(self, *modes):
        return post_json(self.control_port, "/queue", {"modes": list(modes)})

    def reset(self):
        post_json(self.control_port, "/reset", {})

    def records(self, signal=None, all_=False):
        q = []
        if signal:
            q.append("signal=" + signal)
        if all_:
            q.append("all=1")
        return get_json(self.control_port, "/records" + ("?" + "&".join(q) if q else ""))

    def requests(self):
        return get_json(self.control_port, "/requests")

    def stats(self):
        return get_json(self.control_port, "/stats")

    def wait_items(self, signal, n, timeout=15.0):
        """Wait until n accepted items of `signal` are recorded; return the records.
        Then keep watching briefly so that duplicates arriving late are seen."""
        wait_for(lambda: self.stats()["items_accepted"][signal] >= n, timeout,
                 what=lambda: "%d %s at the upstream (upstream stats now: %s)"
                 % (n, signal, self.stats()))
        return self.records(signal)


def _readline_timeout(f, timeout):
    out = []
    t = threading.Thread(target=lambda: out.append(f.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else b""


def yaml_dump(obj, indent=0):
    """Minimal YAML emitter for config dicts (strings double-quoted, JSON style)."""
    lines = []
    pad = "  " * indent
    for k, v in obj.items():
        key = k if re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", k) else json.dumps(k)
        if isinstance(v, dict):
            if not v:
                lines.append("%s%s: {}" % (pad, key))
            else:
                lines.append("%s%s:" % (pad, key))
                lines.append(yaml_dump(v, indent + 1))
        elif isinstance(v, bool):
            lines.append("%s%s: %s" % (pad, key, "true" if v else "false"))
        elif isinstance(v, (int, float)):
            lines.append("%s%s: %s" % (pad, key, v))
        else:
            lines.append("%s%s: %s" % (pad, key, json.dumps(str(v))))
    return "\n".join(lines)


def deep_merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


class Gateway:
    """otlp-service as a child process with a config written into workdir."""

    def __init__(self, workdir, config, env=None, name="gw"):
        self.workdir = str(workdir)
        self.config = config
        self.env = env or {}
        self.name = name
        self.proc = None
        self.config_path = os.path.join(self.workdir, "%s.yaml" % name)
        self.log_path = os.path.join(self.workdir, "%s.stderr.log" % name)
        self.http_port = config["receiver"]["http_port"]
        self.grpc_port = config["receiver"].get("grpc_port", 0)  # 0: gRPC disabled
        self.control_port = config["control"]["port"]

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(yaml_dump(self.config) + "\n")

    def start(self, wait_ready=True, timeout=15.0):
        self.write_config()
        env = dict(os.environ)
        env.update(self.env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([gateway_bin(), "--config", self.config_path],
                                     stdout=self._log, stderr=self._log, env=env,
                                     cwd=self.workdir)
        _register(self.proc)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise Fatal("otlp-service exited with %s during start-up:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                return http_request(self.control_port, "GET", "/health/ready",
                                    timeout=1.0).status == 200
            except OSError:
                return False
        try:
            wait_for(ready, timeout, what="otlp-service /health/ready")
        except Fatal:
            raise
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.log_tail()))

    def stop(self, timeout=15.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "--- %s (last %d lines) ---\n%s" % (self.log_path, n, "\n".join(lines[-n:]))

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()

    def metrics(self):
        r = http_request(self.control_port, "GET", "/metrics")
        assert r.status == 200, r
        return Metrics(r.body.decode("utf-8"))

    def post(self, signal, body, headers, timeout=10.0):
        return http_request(self.http_port, "POST", "/v1/" + signal, body, headers, timeout)

    def send(self, signal, req, encoding="proto", use_gzip=False):
        body, headers = encode_request(req, encoding, use_gzip)
        return self.post(signal, body, headers)


def base_config(tmp_path, upstream=None, **over):
    """A config for one test: loopback only, free ports, fast batching and retry."""
    cfg = {
        "service": {"name": "otlp-it", "log_level": "info", "data_dir": str(tmp_path / "data"),
                    "shutdown_timeout_ms": 5000},
        "receiver": {"host": LOOPBACK, "http_port": free_port(), "grpc_port": free_port(),
                     "retry_after_s": 1},
        "dataplane": {"mode": "socket", "workers": 2},
        "batch": {"max_queue_size": 8192, "max_export_batch_size": 512,
                  "batch_timeout_ms": 50, "max_concurrent_exports": 2},
        "exporter": {"protocol": "file", "timeout_ms": 3000, "compression": "gzip",
                     "retry": {"enabled": True, "initial_interval_ms": 100,
                               "max_interval_ms": 400, "max_elapsed_ms": 30000,
                               "multiplier": 1.5, "randomization": 0.1},
                     "file": {"path": str(tmp_path / "export")}},
        "control": {"host": LOOPBACK, "port": free_port()},
    }
    if upstream is not None:
        cfg["exporter"].update({"protocol": "otlp_http", "endpoint": upstream.url,
                                "tls": {"insecure": True}})
        cfg["exporter"].pop("file")
    (tmp_path / "data").mkdir(exist_ok=True)
    return deep_merge(cfg, over)


# Shell functions for test certificates with the openssl CLI (test_tls.py,
# tests/dpdk/test_dpdk_tls.py): key FILE; mkca NAME CN; leaf NAME CA SERIAL
# DAYS EXTENSIONS (DAYS -1: already expired).
CERT_SH_FUNCS = r'''key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
mkca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.pem -days 30 -subj "/CN=$2" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj "/CN=$1"
  printf '%s\n' "$5" > $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -set_serial $3 -days $4 \
    -extfile $1.ext -out $1.pem; }
'''


def run_js(args, timeout=60):
    """Run js/send.js; returns (CompletedProcess, summary dict or None)."""
    out = None
    for i, a in enumerate(args):
        if a == "--out":
            out = args[i + 1]
    p = subprocess.run(["node", os.path.join(JS_DIR, "send.js")] + list(args),
                       capture_output=True, timeout=timeout, cwd=JS_DIR)
    summary = None
    if out and os.path.exists(out):
        with open(out) as f:
            summary = json.load(f)
    return p, summary


def js_available():
    return os.path.isdir(os.path.join(JS_DIR, "node_modules", "@opentelemetry"))
