-- Replays a request file written by bench/load.py, one request per line:
--   METHOD <TAB> PATH <TAB> BEARER-TOKEN-OR-AUTHORIZATION-OR-EMPTY <TAB> BODY-OR-EMPTY
-- (a token with a space in it is the whole Authorization value, e.g. "Basic dXNlcjp0b2s=").
-- Placeholders in the body and the path make every request fresh: @ID@ becomes a unique ping
-- id, @T<n>@ the ISO time n seconds ago, @E<n>@ the same in epoch seconds (so replayed
-- tracks are always recent) and @U<n>@ the ISO time with milliseconds that differ from one
-- request to the next (a batch replayed within the same second is new fixes, not a retry). Content-Type: application/json is sent only with a body.
-- Usage: wrk -t1 -c64 -d20s -s bench/lua/replay.lua http://127.0.0.1:18001 -- requests.tsv RUNTAG
-- done() prints one line "BENCH_JSON {...}" with throughput and latency percentiles (µs).

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local reqs = {}
local idx = 0
local counter = 0
local sent = 0
local tag = "w"

function init(args)
  local path = args[1]
  tag = (args[2] or "run") .. "-" .. tostring(tid or 0) .. "-"
  for line in io.lines(path) do
    local method, p, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if method then
      local headers = {}
      if body ~= "" then headers["Content-Type"] = "application/json" end
      if token:find(" ", 1, true) then
        headers["Authorization"] = token
      elseif token ~= "" then
        headers["Authorization"] = "Bearer " .. token
      end
      local r = { method = method, path = p, headers = headers, body = body }
      if body == "" then
        r.body = nil
      end
      if body:find("@", 1, true) or p:find("@", 1, true) then
        r.dynamic = true
      else
        r.raw = wrk.format(method, p, headers, r.body)
      end
      reqs[#reqs + 1] = r
    end
  end
  -- threads start at different places in the file
  idx = ((tid or 1) - 1) * math.floor(#reqs / 8)
end

local function fill(s)
  if s == "ID" then
    counter = counter + 1
    return tag .. counter
  end
  local secs = tonumber(s:sub(2)) or 0
  if s:sub(1, 1) == "E" then
    return tostring(os.time() - secs)
  elseif s:sub(1, 1) == "U" then
    return os.date("!%Y-%m-%dT%H:%M:%S", os.time() - secs) .. string.format(".%03dZ", sent % 1000)
  end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - secs)
end

function request()
  idx = idx % #reqs + 1
  sent = sent + 1
  local r = reqs[idx]
  if r.raw then
    return r.raw
  end
  local body = r.body and r.body:gsub("@(%w+)@", fill)
  local p = r.path:gsub("@(%w+)@", fill)
  return wrk.format(r.method, p, r.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
