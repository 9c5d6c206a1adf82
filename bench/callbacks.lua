-- wrk script: POSTs pre-generated, unique callbacks (lines of "PATH?QUERY<TAB>BODY").
-- Each thread takes every Nth line, so no callback is sent twice unless the file
-- runs out; `wrapped` in the summary says whether it did.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  requests, wrapped, i = {}, 0, 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      requests[#requests + 1] =
        wrk.format("POST", line:sub(1, tab - 1), { ["Content-Type"] = "text/xml" }, line:sub(tab + 1))
    end
    i = i + 1
  end
end

function request()
  counter = counter + 1
  if counter > #requests then
    counter, wrapped = 1, wrapped + 1
  end
  return requests[counter]
end

function done(summary, latency, requests)
  local wrapped_total = 0
  for _, thread in ipairs(threads) do
    wrapped_total = wrapped_total + thread:get("wrapped")
  end
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, wrapped_total))
end
