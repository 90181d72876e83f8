"""The limiter's Lua scripts: each runs atomically in Redis and reads Redis's own clock
(`TIME`), so every process of the pool sees one schedule. `CHAIN` reserves slots in one or more
stages, each a GCRA bucket (its theoretical arrival time, TAT, in microseconds) or a shop's share
of an APSIS account, and answers the wait; `DELAY` moves a bucket's whole schedule later;
`RAISE` makes a bucket at least so full; `LEASE` grants one of a pool-wide number of expiring
concurrency permits. `worker.ratelimit.limiter` runs them."""

# Delay the whole schedule of a bucket: every reservation already handed out and every future
# one moves `delay_us` later (waiters re-read the shift after their sleep). A guard makes the
# many answers reporting the same congestion count once: none is applied until `until` passes.
# An idle bucket is first filled (its burst spent), so the next new acquire waits `delay` too.
# KEYS[1] bucket, KEYS[2] shift, KEYS[3] guard; ARGV delay_us, guard_us, (burst-1)*interval_us.
# Returns 1 if applied.
DELAY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local guard = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < guard then return 0 end
local delay = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local full = now + tonumber(ARGV[3])
if tat < full then tat = full end
local new_tat = tat + delay
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
redis.call('INCRBY', KEYS[2], math.floor(delay))
redis.call('PEXPIRE', KEYS[2], 3600000)
local until_ = now + delay + tonumber(ARGV[2])
redis.call('SET', KEYS[3], string.format('%.0f', until_), 'PX', math.ceil((until_ - now) / 1000) + 1)
return 1
"""

# KEYS[1] bucket; ARGV offset_us: make TAT at least now + offset. Returns 1 if it moved.
RAISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local target = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if target <= tat then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', math.ceil((target - now) / 1000) + 1000)
return 1
"""


# A pool-wide concurrency lease: KEYS[1] sorted set of lease id -> expiry (us); ARGV limit,
# ttl_us, lease id. Expired leases (a crashed process) are dropped first. Returns 1 if granted.
LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
return 1
"""

# --- CHAIN: the stages of one request in one round trip -----------------------------------------
#
# An APSIS write takes three slots in turn: its profile's bucket, its shop's share of the account,
# the account's bucket. Taken one script each, that was three round trips per request, a quarter
# of a webhook's (docs/PERFORMANCE-LOG.md). CHAIN takes them in order in one script and stops after
# the first stage that has to wait: the caller sleeps, then sends the remaining stages, so every
# slot is still reserved only once the stages before it are due, exactly as one at a time.
#
# KEYS: three per stage. ARGV[1] the number of stages, then eight per stage: a kind and its
# arguments (unused ones empty):
#   'g' GCRA bucket; KEYS bucket, shift, state registry; ARGV interval_us, burst, cost,
#       max_wait_us, name, listed (1: snapshot into the registry for `shopsync status`);
#   's' a participant's share; KEYS share bucket, usage hash, state registry; ARGV rate_per_s,
#       participant, burst, cost, max_wait_us, headroom, name.
# Returns {stages reserved, admitted (1|0), wait_us, extra}: admitted 1, the last reserved
# stage's wait (0 when every stage was free) and, for a GCRA stage, its bucket's shift_us (a
# share stage: its cap per second); admitted 0, the refused stage's wait (nothing of it reserved).

CHAIN = """
local function gcra(now, bucket, shift_key, registry, interval, burst, cost, max_wait, name)
  local tat = tonumber(redis.call('GET', bucket) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local wait = new_tat - burst * interval - now
  if wait < 0 then wait = 0 end
  local shift = tonumber(redis.call('GET', shift_key) or '0')
  if max_wait >= 0 and wait > max_wait then return 0, math.floor(wait), shift end
  redis.call('SET', bucket, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
  if registry then
    -- A snapshot at this acquire for `shopsync status` (limiter_state() computes live levels).
    redis.call('HSET', registry, name, cjson.encode({
      interval_us = interval, rate_per_s = 1000000 / interval, burst = burst,
      level = (new_tat - now) / interval, wait_s = wait / 1000000, at = now / 1000000}))
  end
  return 1, math.floor(wait), shift
end

-- One shop's share of an APSIS account bucket, taken before the account's own slot. Participants
-- are "shop/lane" (lane: realtime or bulk); the account's usage hash counts each participant's
-- requests per second ("participant|second" -> count; older seconds are dropped here). Alone on
-- the account, a participant has no cap (nothing reserved). With others active (a request in
-- this or the last second), its cap is max(rate / participants, rate - what the others used in
-- the last whole second): an equal share when everyone wants more, the others' unused part
-- otherwise. A bulk (full-sync) participant leaves `headroom` of the rate free while any
-- real-time participant is active, so the account bucket never fills and real-time requests do
-- not queue behind full-sync reservations. The cap is a GCRA bucket of its own.
local function share(now, bucket, usage, registry, rate, me, burst, cost, max_wait, headroom, name)
  local sec = math.floor(now / 1000000)
  local bulk = string.sub(me, -5) == '/bulk'
  local raw = redis.call('HGETALL', usage)
  local seen, n, others_used, realtime_other = {}, 0, 0, false
  for i = 1, #raw, 2 do
    local field = raw[i]
    local sep = string.find(field, '|', 1, true)
    local who = string.sub(field, 1, sep - 1)
    local s = tonumber(string.sub(field, sep + 1))
    if s < sec - 1 then
      redis.call('HDEL', usage, field)
    elseif who ~= me then
      if not seen[who] then seen[who] = true; n = n + 1 end
      if s == sec - 1 then others_used = others_used + tonumber(raw[i + 1]) end
      if string.sub(who, -9) == '/realtime' then realtime_other = true end
    end
  end
  local wait, cap = 0, 0
  if n > 0 then
    cap = math.max(rate / (n + 1), rate - others_used)
    if bulk and realtime_other then cap = cap - rate * headroom end
    if cap < rate * 0.02 then cap = rate * 0.02 end
    local interval = 1000000 / cap
    local tat = tonumber(redis.call('GET', bucket) or '0')
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    wait = new_tat - burst * interval - now
    if wait < 0 then wait = 0 end
    if max_wait >= 0 and wait > max_wait then return 0, math.floor(wait), math.floor(cap) end
    redis.call('SET', bucket, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
    redis.call('HSET', registry, name, cjson.encode({
      interval_us = math.floor(interval), rate_per_s = cap, burst = burst,
      level = (new_tat - now) / interval, wait_s = wait / 1000000, at = now / 1000000,
      participants = n + 1}))
  end
  redis.call('HINCRBY', usage, me .. '|' .. sec, cost)
  redis.call('PEXPIRE', usage, 5000)
  return 1, math.floor(wait), math.floor(cap)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stages = tonumber(ARGV[1])
for i = 1, stages do
  local k, a = (i - 1) * 3, 1 + (i - 1) * 8
  local ok, wait, extra
  if ARGV[a + 1] == 'g' then
    local registry = false
    if ARGV[a + 7] == '1' then registry = KEYS[k + 3] end
    ok, wait, extra = gcra(now, KEYS[k + 1], KEYS[k + 2], registry, tonumber(ARGV[a + 2]),
      tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6])
  else
    ok, wait, extra = share(now, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], tonumber(ARGV[a + 2]),
      ARGV[a + 3], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]),
      tonumber(ARGV[a + 7]), ARGV[a + 8])
  end
  if ok == 0 then return {i - 1, 0, wait, extra} end
  if wait > 0 or i == stages then return {i, 1, wait, extra} end
end
"""
