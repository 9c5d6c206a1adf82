-- wrk script: POSTs pre-generated, unique callbacks (lines of "PATH?QUERY<TAB>BODY").
-- Each thread takes its own contiguous share of the file, so no callback is sent twice
-- unless a share runs out; `wrapped` in the summary says whether one did.
--
-- The file is mapped (LuaJIT's FFI), not read in `init`: wrk runs each thread's `init`
-- in turn and starts that thread at once, but starts its clock only after the last
-- one. Reading a 20 s step's 2.8 GB took each thread ~15 s, so the first thread's
-- requests during the second one's `init` were counted against a clock that had not
-- started yet (and the second `init` took a core from the server meanwhile).
local ffi = require("ffi")
ffi.cdef [[
int open(const char *path, int flags);
int close(int fd);
long lseek(int fd, long offset, int whence);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
void *memchr(const void *s, int c, size_t n);
]]
local O_RDONLY, SEEK_END, PROT_READ, MAP_SHARED = 0, 2, 1, 1
local TAB, NEWLINE = 9, 10

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local text, address, first, stop, at
local headers = { ["Content-Type"] = "text/xml" }

-- The offset of the first newline in [offset, limit), or `limit` when there is none.
local function line_end(offset, limit)
  local newline = ffi.C.memchr(text + offset, NEWLINE, limit - offset)
  -- Addresses as numbers: LuaJIT's pointer difference wrapped at 2 GiB here.
  return newline == nil and limit or tonumber(ffi.cast("intptr_t", newline)) - address
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local fd = ffi.C.open(path, O_RDONLY)
  assert(fd >= 0, "cannot open " .. path)
  local size = tonumber(ffi.C.lseek(fd, 0, SEEK_END))
  local map = ffi.C.mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
  assert(ffi.cast("intptr_t", map) ~= -1, "cannot map " .. path)
  ffi.C.close(fd)
  text = ffi.cast("const char *", map)
  address = tonumber(ffi.cast("intptr_t", map))
  -- A share starts at the first whole line at or after its byte offset.
  local function share_start(share)
    local offset = math.floor(size * share / nthreads)
    return offset == 0 and 0 or math.min(line_end(offset - 1, size) + 1, size)
  end
  first, stop = share_start(id), share_start(id + 1)
  at, wrapped = first, 0
  assert(stop > first, "the callback file has no line for thread " .. id)
end

function request()
  if at >= stop then
    at, wrapped = first, wrapped + 1
  end
  local line = text + at
  local ends = line_end(at, stop)
  local tab = tonumber(ffi.cast("intptr_t", ffi.C.memchr(line, TAB, ends - at))) - address - at
  local path, body = ffi.string(line, tab), ffi.string(line + tab + 1, ends - at - tab - 1)
  at = ends + 1
  return wrk.format("POST", path, headers, body)
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
