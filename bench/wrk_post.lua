-- wrk script: POST a pre-encoded OTLP request file.
--   wrk -s bench/wrk_post.lua URL -- FILE [content-encoding]
local body, enc
function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  enc = args[2]
end
function request()
  local h = {["Content-Type"] = "application/x-protobuf"}
  if enc then h["Content-Encoding"] = enc end
  return wrk.format("POST", nil, h, body)
end
local codes = {}
function response(status, headers, b)
  codes[status] = (codes[status] or 0) + 1
end
function done(summary, latency, requests)
  io.write(string.format("requests %d, non-2xx %d, p50 %.3f ms, p99 %.3f ms\n",
    summary.requests, summary.errors.status, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
