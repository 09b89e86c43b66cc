-- wrk script: optional POST body from the environment, and a one-line JSON summary at the end.
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local s = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "rps": %.1f, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.requests / secs, latency:percentile(50), latency:percentile(99),
    latency.max, s.status, s.connect + s.read + s.write + s.timeout))
end
