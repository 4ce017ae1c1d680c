# SPDX-License-Identifier: Apache-2.0
"""OTLP protobuf classes and canonical forms shared by upstream.py and the tests.

The Python classes are generated at import time from the project's own
proto/ tree (found relative to this file) with protoc, so the tests speak
exactly the wire format the gateway is built from. Everything that compares
"what was sent" with "what arrived" goes through canonical_*() below, which
turns protobuf messages, OTLP/JSON documents and the JS client's summary into
one plain-dict form (hex ids, integer enums, attributes as a key -> typed
value dict, default values filled in).
"""

import atexit
import base64
import binascii
import gzip
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PROTO_ROOT = os.path.join(REPO_ROOT, "proto")

_PROTO_FILES = [
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/metrics/v1/metrics.proto",
    "opentelemetry/proto/logs/v1/logs.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
]


def _generate():
    """Run protoc into a private temp dir (removed at exit) and import the modules."""
    out = tempfile.mkdtemp(prefix="otlp-pb-")
    atexit.register(shutil.rmtree, out, True)
    cmd = ["protoc", "-I", PROTO_ROOT, "--python_out=" + out] + _PROTO_FILES
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("protoc not found: apt-get install protobuf-compiler")
    except subprocess.CalledProcessError as e:
        raise RuntimeError("protoc failed: %s" % e.stderr)
    sys.path.insert(0, out)
    mods = {}
    for f in _PROTO_FILES:
        name = f[:-len(".proto")].replace("/", ".") + "_pb2"
        mods[name.split(".")[-1]] = importlib.import_module(name)
    return mods


_M = _generate()
common_pb2 = _M["common_pb2"]
resource_pb2 = _M["resource_pb2"]
trace_pb2 = _M["trace_pb2"]
metrics_pb2 = _M["metrics_pb2"]
logs_pb2 = _M["logs_pb2"]
trace_service_pb2 = _M["trace_service_pb2"]
metrics_service_pb2 = _M["metrics_service_pb2"]
logs_service_pb2 = _M["logs_service_pb2"]

from google.protobuf import json_format  # noqa: E402  (after sys.path is set)
from google.protobuf.message import DecodeError  # noqa: E402,F401

SIGNALS = ("traces", "metrics", "logs")
PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}

# signal -> (request class, response class, resource list field, scope list field, item field)
SIGNAL_INFO = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest,
               trace_service_pb2.ExportTraceServiceResponse,
               "resource_spans", "scope_spans", "spans"),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest,
                metrics_service_pb2.ExportMetricsServiceResponse,
                "resource_metrics", "scope_metrics", "metrics"),
    "logs": (logs_service_pb2.ExportLogsServiceRequest,
             logs_service_pb2.ExportLogsServiceResponse,
             "resource_logs", "scope_logs", "log_records"),
}

# OTLP/JSON differs from the protobuf JSON mapping in one place: these bytes
# fields are hex strings, not base64 (OTLP spec, "JSON Protobuf Encoding").
_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def request_class(signal):
    return SIGNAL_INFO[signal][0]


def response_class(signal):
    return SIGNAL_INFO[signal][1]


def _walk_ids(obj, conv):
    if isinstance(obj, dict):
        return {k: (conv(v) if k in _ID_KEYS and isinstance(v, str) else _walk_ids(v, conv))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk_ids(v, conv) for v in obj]
    return obj


def _b64_to_hex(s):
    return base64.b64decode(s).hex()


def _hex_to_b64(s):
    try:
        raw = bytes.fromhex(s)
    except ValueError:
        raise ValueError("id is not hex: %r" % s)
    return base64.b64encode(raw).decode()


def message_to_otlp_dict(msg):
    """Protobuf message -> OTLP/JSON-shaped dict (camelCase, int enums, hex ids)."""
    d = json_format.MessageToDict(msg, use_integers_for_enums=True)
    return _walk_ids(d, _b64_to_hex)


def message_to_otlp_json(msg):
    return json.dumps(message_to_otlp_dict(msg), separators=(",", ":"))


def parse_otlp_json(data, cls, ignore_unknown=False):
    """OTLP/JSON bytes or str (or an already-loaded dict) -> message of `cls`.
    Raises ValueError on anything that is not valid OTLP/JSON."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8")
    doc = json.loads(data) if isinstance(data, str) else data
    if not isinstance(doc, dict):
        raise ValueError("OTLP/JSON document must be an object")
    doc = _walk_ids(doc, _hex_to_b64)
    msg = cls()
    try:
        json_format.ParseDict(doc, msg, ignore_unknown_fields=ignore_unknown)
    except json_format.ParseError as e:
        raise ValueError(str(e))
    return msg


def decode_body(body, content_type, content_encoding, signal):
    """HTTP request body -> Export*ServiceRequest. Raises ValueError when it cannot."""
    enc = (content_encoding or "").strip().lower()
    if enc == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, binascii.Error) as e:
            raise ValueError("bad gzip: %s" % e)
    elif enc not in ("", "identity"):
        raise ValueError("unsupported content-encoding %r" % enc)
    ct = (content_type or "").split(";")[0].strip().lower()
    cls = request_class(signal)
    if ct == "application/json":
        return parse_otlp_json(body, cls)
    if ct in ("application/x-protobuf", "application/protobuf"):
        msg = cls()
        try:
            msg.ParseFromString(body)
        except DecodeError as e:
            raise ValueError("bad protobuf: %s" % e)
        return msg
    raise ValueError("unsupported content-type %r" % ct)


def flatten(signal, req):
    """Export*ServiceRequest (or *Data) -> list of records, one per span / data
    point / log record: {"signal", "resource", "scope", "item", ...}.
    For metrics each data point is one record and "metric" holds the metric
    descriptor (name, unit, type, temporality) without its data points."""
    _, _, rfield, sfield, ifield = SIGNAL_INFO[signal]
    out = []
    for r in getattr(req, rfield):
        res = message_to_otlp_dict(r.resource)
        for s in getattr(r, sfield):
            scope = message_to_otlp_dict(s.scope)
            urls = {"resource_schema_url": r.schema_url, "scope_schema_url": s.schema_url}
            for it in getattr(s, ifield):
                if signal != "metrics":
                    out.append({"signal": signal, "resource": res, "scope": scope,
                                "item": message_to_otlp_dict(it), **urls})
                    continue
                kind = it.WhichOneof("data")
                meta = {"name": it.name, "description": it.description, "unit": it.unit,
                        "type": kind or ""}
                if kind:
                    data = getattr(it, kind)
                    if hasattr(data, "aggregation_temporality"):
                        meta["aggregationTemporality"] = int(data.aggregation_temporality)
                    if hasattr(data, "is_monotonic"):
                        meta["isMonotonic"] = bool(data.is_monotonic)
                    for dp in data.data_points:
                        out.append({"signal": signal, "resource": res, "scope": scope,
                                    "metric": meta, "item": message_to_otlp_dict(dp), **urls})
    return out


def count_items(signal, req):
    _, _, rfield, sfield, ifield = SIGNAL_INFO[signal]
    n = 0
    for r in getattr(req, rfield):
        for s in getattr(r, sfield):
            if signal == "metrics":
                for m in s.metrics:
                    kind = m.WhichOneof("data")
                    if kind:
                        n += len(getattr(m, kind).data_points)
            else:
                n += len(getattr(s, ifield))
    return n


# ---------------------------------------------------------------------------
# Canonical forms for comparison
# ---------------------------------------------------------------------------

def anyvalue(v):
    """OTLP/JSON AnyValue dict -> hashable typed value: ("s", "x"), ("i", 3), ..."""
    if v is None or v == {}:
        return ("empty",)
    if "stringValue" in v:
        return ("s", v["stringValue"])
    if "boolValue" in v:
        return ("b", bool(v["boolValue"]))
    if "intValue" in v:
        return ("i", int(v["intValue"]))
    if "doubleValue" in v:
        return ("d", float(v["doubleValue"]))
    if "bytesValue" in v:
        return ("y", v["bytesValue"])
    if "arrayValue" in v:
        return ("a", tuple(anyvalue(x) for x in v["arrayValue"].get("values", [])))
    if "kvlistValue" in v:
        return ("kv", tuple(sorted(attrs(v["kvlistValue"].get("values", [])).items())))
    raise ValueError("unknown AnyValue %r" % (v,))


def attrs(kvs):
    """List of OTLP/JSON KeyValue -> {key: typed value}. Duplicate keys are an error
    (the gateway must upsert, not append)."""
    out = {}
    for kv in kvs or []:
        k = kv["key"]
        if k in out:
            raise AssertionError("duplicate attribute key %r in %r" % (k, kvs))
        out[k] = anyvalue(kv.get("value"))
    return out


def _i(v):
    return int(v) if v not in (None, "") else 0


def canonical_span(d):
    st = d.get("status") or {}
    return {
        "traceId": d.get("traceId", ""),
        "spanId": d.get("spanId", ""),
        "parentSpanId": d.get("parentSpanId", ""),
        "traceState": d.get("traceState", ""),
        "name": d.get("name", ""),
        "kind": _i(d.get("kind")),
        "startTimeUnixNano": _i(d.get("startTimeUnixNano")),
        "endTimeUnixNano": _i(d.get("endTimeUnixNano")),
        "attributes": attrs(d.get("attributes")),
        "flags": _i(d.get("flags")),
        "droppedAttributesCount": _i(d.get("droppedAttributesCount")),
        "droppedEventsCount": _i(d.get("droppedEventsCount")),
        "droppedLinksCount": _i(d.get("droppedLinksCount")),
        "events": [{"timeUnixNano": _i(e.get("timeUnixNano")), "name": e.get("name", ""),
                    "attributes": attrs(e.get("attributes")),
                    "droppedAttributesCount": _i(e.get("droppedAttributesCount"))}
                   for e in d.get("events", [])],
        "links": [{"traceId": ln.get("traceId", ""), "spanId": ln.get("spanId", ""),
                   "traceState": ln.get("traceState", ""), "flags": _i(ln.get("flags")),
                   "attributes": attrs(ln.get("attributes")),
                   "droppedAttributesCount": _i(ln.get("droppedAttributesCount"))}
                  for ln in d.get("links", [])],
        "status": {"code": _i(st.get("code")), "message": st.get("message", "")},
    }


def canonical_log(d):
    return {
        "timeUnixNano": _i(d.get("timeUnixNano")),
        "observedTimeUnixNano": _i(d.get("observedTimeUnixNano")),
        "severityNumber": _i(d.get("severityNumber")),
        "severityText": d.get("severityText", ""),
        "body": anyvalue(d.get("body")),
        "attributes": attrs(d.get("attributes")),
        "droppedAttributesCount": _i(d.get("droppedAttributesCount")),
        "flags": _i(d.get("flags")),
        "traceId": d.get("traceId", ""),
        "spanId": d.get("spanId", ""),
    }


def canonical_point(meta, d):
    p = {
        "metric": meta["name"],
        "unit": meta.get("unit", ""),
        "type": meta.get("type", ""),
        "attributes": attrs(d.get("attributes")),
        "startTimeUnixNano": _i(d.get("startTimeUnixNano")),
        "timeUnixNano": _i(d.get("timeUnixNano")),
        "flags": _i(d.get("flags")),
        "description": meta.get("description", ""),
    }
    if "aggregationTemporality" in meta:
        p["aggregationTemporality"] = meta["aggregationTemporality"]
    if "isMonotonic" in meta:
        p["isMonotonic"] = meta["isMonotonic"]
    if "asInt" in d:
        p["value"] = ("i", int(d["asInt"]))
    elif "asDouble" in d:
        p["value"] = ("d", float(d["asDouble"]))
    if meta.get("type") == "summary":
        p["count"] = _i(d.get("count"))
        p["sum"] = float(d.get("sum", 0.0))
        p["quantileValues"] = [(float(q.get("quantile", 0.0)), float(q.get("value", 0.0)))
                               for q in d.get("quantileValues", [])]
    if meta.get("type") == "exponential_histogram":
        p["raw"] = json.dumps({k: v for k, v in d.items() if k != "attributes"}, sort_keys=True)
    if meta.get("type") in ("histogram",):
        p["count"] = _i(d.get("count"))
        p["sum"] = float(d.get("sum", 0.0))
        p["bucketCounts"] = [int(x) for x in d.get("bucketCounts", [])]
        p["explicitBounds"] = [float(x) for x in d.get("explicitBounds", [])]
        if "min" in d:
            p["min"] = float(d["min"])
        if "max" in d:
            p["max"] = float(d["max"])
    return p


def canonical_record(rec, ignore_resource_keys=()):
    """Upstream/summary record -> canonical dict (resource attrs minus ignored keys)."""
    sig = rec["signal"]
    res = attrs((rec.get("resource") or {}).get("attributes"))
    for k in ignore_resource_keys:
        res.pop(k, None)
    scope = rec.get("scope") or {}
    out = {"resource": res,
           "scope": {"name": scope.get("name", ""), "version": scope.get("version", ""),
                     "attributes": attrs(scope.get("attributes")),
                     "droppedAttributesCount": _i(scope.get("droppedAttributesCount"))},
           "resource_schema_url": rec.get("resource_schema_url", ""),
           "scope_schema_url": rec.get("scope_schema_url", "")}
    if sig == "traces":
        out["item"] = canonical_span(rec["item"])
    elif sig == "logs":
        out["item"] = canonical_log(rec["item"])
    else:
        out["item"] = canonical_point(rec["metric"], rec["item"])
    return out


def record_key(rec):
    """A key that identifies one item across sender and receiver."""
    sig = rec.get("signal")
    if sig == "traces":
        return ("span", rec["item"]["traceId"], rec["item"]["spanId"])
    if sig == "logs":
        a = attrs(rec["item"].get("attributes"))
        if "seq" in a:
            return ("log", a["seq"])
        return ("log", json.dumps(rec["item"], sort_keys=True))
    a = attrs(rec["item"].get("attributes"))
    return ("point", rec["metric"]["name"], tuple(sorted(a.items())))


def freeze(obj):
    """Make a canonical dict hashable / order independent for multiset compares."""
    if isinstance(obj, dict):
        return tuple(sorted((k, freeze(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(freeze(v) for v in obj)
    return obj
