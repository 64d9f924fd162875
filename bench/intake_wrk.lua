-- wrk script for bench/intake_wrk.py: POSTs precomputed, distinct, correctly signed webhooks.
--
--   wrk -t2 -c32 -d10s -s bench/intake_wrk.lua http://127.0.0.1:PORT -- BODIES_FILE PATH THREADS
--
-- BODIES_FILE has one webhook a line: "<signature> <form body>" (neither contains a space). Thread
-- k of n sends lines k, k+n, k+2n... so no two requests of a run carry the same body; a thread
-- that runs out of lines starts again from its first one and counts it (`wrapped` in the summary:
-- bench/intake_wrk.py makes the file large enough that it stays 0, and checks).
-- Requests are formatted once, in init, so the Lua side costs wrk next to nothing per request.
-- done() prints one JSON line, prefixed "WRK_JSON ", that bench/intake_wrk.py reads.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file, path = args[1], args[2]
   requests = {}
   local n = 0
   local index = 0
   local step = tonumber(args[3]) -- the thread count, passed explicitly
   for line in io.lines(file) do
      if index % step == id then
         local sep = line:find(" ", 1, true)
         local signature, body = line:sub(1, sep - 1), line:sub(sep + 1)
         n = n + 1
         requests[n] = wrk.format("POST", path, {
            ["Content-Type"] = "application/x-www-form-urlencoded",
            ["X-FreshBooks-Hmac-SHA256"] = signature,
         }, body)
      end
      index = index + 1
   end
   count = n
   next_index = 1
   wrapped = 0
end

function request()
   local r = requests[next_index]
   next_index = next_index + 1
   if next_index > count then
      next_index = 1
      wrapped = wrapped + 1
   end
   return r
end

function done(summary, latency, requests_)
   local wraps = 0
   for _, t in ipairs(threads) do
      wraps = wraps + (t:get("wrapped") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "non_2xx_3xx": %d, "timeouts": %d, "wrapped": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, wraps, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
