-- wrk.lua's mix of requests, each stamped with its send time on CLOCK_MONOTONIC (the agent's
-- clock), which the service echoes back (under SERVICE_TICKS): each response's latency as the
-- client sees it, in a histogram per 100 ms of the clock (8 buckets per doubling from 1 µs),
-- appended to WRK_TICKS as each 100 ms ends: "<tick start ns> <count in bucket 0> <bucket 1> ...".
-- One wrk thread (-t1): one writer.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } leakscope_timespec;
  int clock_gettime(int clock, leakscope_timespec *ts);
]]
local ts = ffi.new("leakscope_timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000000 + tonumber(ts.tv_nsec)
end

local TICK_NS, BUCKETS = 100000000, 8 * 24
local out = assert(io.open(assert(os.getenv("WRK_TICKS"), "WRK_TICKS is not set"), "a"))
local tick, histogram = nil, {}

local function flush()
  if tick then
    local fields = { string.format("%d", tick * TICK_NS) }
    for b = 0, BUCKETS - 1 do fields[#fields + 1] = histogram[b] or 0 end
    out:write(table.concat(fields, " "), "\n")
    out:flush()
  end
  histogram = {}
end

local counter = 0
request = function()
  counter = counter + 1
  local sent = { ["X-Sent"] = string.format("%d", now_ns()) }
  if counter % 5 == 0 then
    sent["Content-Type"] = "application/json"
    local body = '{"items":[{"sku":"SKU-00042","quantity":2},{"sku":"SKU-00' .. (100 + counter % 400) .. '","quantity":1}]}'
    return wrk.format("POST", "/quote", sent, body)
  end
  return wrk.format("GET", "/orders/" .. (counter * 7919 % 20000) .. "?page=" .. (counter % 3), sent)
end

response = function(status, headers, body)
  local sent = tonumber(headers["X-Sent"])
  if not sent then return end
  local now = now_ns()
  local t = math.floor(now / TICK_NS)
  if t ~= tick then
    flush()
    tick = t
  end
  local us = math.max((now - sent) / 1000, 1)
  local b = math.min(math.floor(math.log(us) / math.log(2) * 8), BUCKETS - 1)
  histogram[b] = (histogram[b] or 0) + 1
end
