"""The Lua scripts run inside Redis: each decision is one atomic round trip.

GCRA follows :mod:`outrider.throttle.rate` exactly (the debt of a key used with a new
interval is rescaled once), with one addition for the scheduler: ``want`` admissions
may be taken at once, each granted while it conforms within ``ahead`` seconds of
``now``, so a connection sending several messages reserves their slots in one call.
A rate key is a hash ``{t: TAT, i: interval}`` that expires once drained.

Connection leases are a sorted set per limited key: member ``node:conn``, score the
lease's expiry in milliseconds of the Redis server's clock (one clock for every node,
so a dead node's leases run out the same for all). Expired members are removed by
whoever looks at the key next.

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
-- KEYS[1] lease set, KEYS[2] rate (optional); ARGV member, limit (-1: none), lease ms,
-- then interval, span, now for the rate. Returns {0|1|2, wait}: 0 leased, 1 the count
-- refused, 2 the rate refused (nothing kept).
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
local limit = tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, string.format('%.17g', (tonumber(first[2]) - ms) / 1000)}
  end
end
if KEYS[2] then
  local iv, span, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local granted, value = take(KEYS[2], iv, span, now, 1, 0)
  if granted == 0 then
    return {2, string.format('%.17g', value)}
  end
end
redis.call('ZADD', KEYS[1], ms + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
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
