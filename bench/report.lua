-- wrk script: optional POST body from the environment, and a one-line JSON summary at the end.
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

-- Refresh-token rotation: WRK_REFRESH_TOKENS holds one refresh token per wrk thread (run with as
-- many threads as connections, so each connection is one session). Every request presents its
-- session's current token and takes the next one from the answer; a refused rotation leaves
-- the token as it was, so every later request of that session fails too (counted as non-2xx).
local refresh_tokens = os.getenv("WRK_REFRESH_TOKENS")
if refresh_tokens and refresh_tokens ~= "" then
  local list = {}
  for t in string.gmatch(refresh_tokens, "[^,]+") do list[#list + 1] = t end
  local handed = 0
  function setup(thread)
    handed = handed + 1
    thread:set("token", list[handed])
  end
  function request()
    return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "refresh_token=" .. token)
  end
  function response(status, headers, answer)
    if status == 200 then
      token = string.match(answer, '"refresh_token":"([^"]+)"') or token
    end
  end
end

-- Many users: WRK_TOKENS_FILE holds one access token per line (and a pad); each request presents the next
-- one, round and round, so every user's token comes back once per pass.
local tokens_file = os.getenv("WRK_TOKENS_FILE")
if tokens_file and tokens_file ~= "" then
  -- A line is "token pad": the pad goes in `X-Bench-Pad`, which the server ignores (run.py
  -- says why it is there).
  local list = {}
  for line in io.lines(tokens_file) do
    line = line:gsub("\r$", "")
    local token, pad = string.match(line, "^(%S+) ?(%S*)$")
    assert(token, "bad line in WRK_TOKENS_FILE: " .. line)
    list[#list + 1] = { Authorization = "Bearer " .. token, ["X-Bench-Pad"] = pad ~= "" and pad or nil }
  end
  -- One counter per wrk thread: run.py runs these cases with one thread, so one pass presents
  -- every line once.
  local next_one = 0
  function request()
    next_one = next_one % #list + 1
    return wrk.format(nil, nil, list[next_one])
  end
end

-- A paced crowd: WRK_DELAY_MS milliseconds between a connection's requests (an attacker's rate,
-- rather than as fast as the two cores can go).
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay()
    return delay_ms
  end
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
