"""The Lua scripts run inside Redis: each decision is one atomic round trip.

GCRA follows :mod:`outrider.throttle.rate` exactly (the debt of a key used with a new
interval is rescaled once), with one addition for the scheduler: ``want`` admissions
may be taken at once, each granted while it conforms within ``ahead`` seconds of
``now``, so a connection sending several messages reserves their slots in one call.
A rate key is a hash ``{t: TAT, i: interval}`` that expires once drained.

Connection leases are a sorted set per limited key: member ``node:conn``, score the
lease's expiry in milliseconds of the Redis server's clock (one clock for every node,
so a dead node's leases run out the same for all). Expired members are removed by
whoever looks at the key next. A delivery connection from a source address holds two
leases under one member (its queue's and its address's), taken together or not at all.

Numbers go back as strings: Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "EVENT", "GCRA", "HEARTBEAT", "RENEW", "SET_STATE"]

# The GCRA step shared by GCRA and ACQUIRE: local function take(key, interval, span,
# now, want, ahead) -> granted, value (the TAT before the first grant, or the wait).
_GCRA_FN = """
local function num(x) return string.format('%.17g', x) end
local function take(key, interval, span, now, want, ahead)
  local state = redis.call('HMGET', key, 't', 'i')
  local tat, built = tonumber(state[1]), tonumber(state[2])
  local base = now
  if tat and tat > now then
    if built and built ~= interval then
      base = now + (tat - now) * (interval / built)
    else
      base = tat
    end
  end
  local first = base
  local granted = 0
  while granted < want and base + interval - span - now <= ahead + 1e-9 do
    base = base + interval
    granted = granted + 1
  end
  if granted == 0 then
    if tat and built ~= interval and base > now then
      redis.call('HSET', key, 't', num(base), 'i', num(interval))
      redis.call('PEXPIRE', key, math.ceil((base - now) * 1000) + 1000)
    end
    return 0, base + interval - span - now
  end
  redis.call('HSET', key, 't', num(base), 'i', num(interval))
  redis.call('PEXPIRE', key, math.ceil((base - now) * 1000) + 1000)
  return granted, first
end
"""

GCRA = (
    _GCRA_FN
    + """
-- KEYS[1] rate; ARGV interval, span, now, want, ahead, peek
local interval, span, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, ahead = tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[6] == '1' then
  local state = redis.call('HMGET', KEYS[1], 't', 'i')
  local tat, built = tonumber(state[1]), tonumber(state[2])
  local base = now
  if tat and tat > now then
    if built and built ~= interval then
      base = now + (tat - now) * (interval / built)
      redis.call('HSET', KEYS[1], 't', num(base), 'i', num(interval))
    else
      base = tat
    end
  end
  return {0, string.format('%.17g', base + interval - span - now)}
end
local granted, value = take(KEYS[1], interval, span, now, want, ahead)
return {granted, string.format('%.17g', value)}
"""
)

ACQUIRE = (
    _GCRA_FN
    + """
-- KEYS[1..n] lease sets (the queue's, then its source address's), KEYS[n+1] rate
-- (optional); ARGV member, limit (-1: none), lease ms, n, then interval, span, now for
-- the rate. All or nothing: returns {0|1|2, wait}: 0 leased in every set, 1 a count
-- refused (the wait until that set's first lease expires), 2 the rate refused; when
-- refused, nothing is kept.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ms)
  if not redis.call('ZSCORE', KEYS[i], ARGV[1]) then
    if limit >= 0 and redis.call('ZCARD', KEYS[i]) >= limit then
      local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      local wait = 0
      if first[2] then wait = (tonumber(first[2]) - ms) / 1000 end
      return {1, string.format('%.17g', wait)}
    end
  end
end
if KEYS[n + 1] then
  local iv, span, now = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local granted, value = take(KEYS[n + 1], iv, span, now, 1, 0)
  if granted == 0 then
    return {2, string.format('%.17g', value)}
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], ms + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], lease * 2)
end
return {0, '0'}
"""
)

RENEW = """
-- KEYS lease sets; ARGV[1] lease ms, then one member per key. Re-adds a member that
-- is missing (taken while Redis was away, or after a Redis restart).
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ms + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease * 2)
end
return #KEYS
"""

HEARTBEAT = """
-- KEYS[1] the node's heartbeat key, KEYS[2] the live-node set; ARGV node, ttl ms,
-- info. Returns the number of live nodes (this one included).
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[2], ms + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms)
return redis.call('ZCARD', KEYS[2])
"""

EVENT = """
-- KEYS[1] event set; ARGV now, window, id, add ('1' records one). Returns the count.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - window))
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
end
return redis.call('ZCARD', KEYS[1])
"""

# Cluster-wide operator state (outrider.cluster.shared_state): last writer wins.
SET_STATE = """
-- KEYS[1] state hash, KEYS[2] version; ARGV field, json, at, node. Keeps the newest.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  if old == ARGV[2] then return 0 end
  local prev = cjson.decode(old)
  local at = tonumber(ARGV[3])
  if prev['at'] > at or (prev['at'] == at and prev['node'] >= ARGV[4]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""
