/**
 * The Lua scripts the Redis store runs: each is one atomic step on the server, sent with EVALSHA
 * (one round trip) and loaded with EVAL when the server does not know it yet (a restart or a
 * SCRIPT FLUSH forgets them). Times come from the server's own clock (TIME), so the processes of a
 * fleet need not agree on theirs. Numbers are returned as strings: Redis truncates a Lua number
 * to an integer on the way out.
 */

import { createHash } from 'node:crypto';

export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Rate limit admission, GCRA on one key holding the theoretical arrival time (TAT) in ms.
 * ARGV: interval ms, burst, maxWait ms, count, lease. Reserves up to `count` tokens (the requests
 * of one process that arrived together), each with its own time one interval after the last, as
 * long as its wait is at most maxWait; then, when all `count` were granted, up to `lease` more that
 * are free right now. Returns { granted, base }: token i may be used `base + i × interval` ms from
 * now (a negative base: that many ms ago), so `base` alone is the wait of a refused request.
 */
export const ACQUIRE = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local maxWait = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local base = tat + interval - burst * interval - now
local granted = 0
if base <= maxWait then
  granted = math.floor((maxWait - base) / interval + 1e-9) + 1
  if granted > count then granted = count end
end
if granted == count and lease > 0 and base <= 0 then
  local extra = math.floor(-base / interval + 1e-9) + 1 - count
  if extra > lease then extra = lease end
  if extra > 0 then granted = granted + extra end
end
if granted > 0 then
  tat = tat + granted * interval
  redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
end
return {granted, tostring(base)}
`);

/**
 * Pauses a rate limit: nothing is admitted before now + ARGV[3] ms, and the bucket is empty then.
 * ARGV: interval ms, burst, pause ms. A shorter pause than one in force changes nothing.
 */
export const PAUSE = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = now + tonumber(ARGV[3]) + (burst - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if wanted > tat then
  redis.call('SET', KEYS[1], tostring(wanted), 'PX', math.ceil(wanted - now) + 1000)
end
return 1
`);

/**
 * Publishes a circuit's change on ARGV[1] (the message, ARGV[2]) and keeps an opening in KEYS[1]
 * for ARGV[4] ms (until its probe is due), so that a process that was not listening can read it;
 * a closing deletes it.
 */
export const PUBLISH = script(`
if ARGV[3] == 'open' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', math.max(1, math.ceil(tonumber(ARGV[4]))))
else
  redis.call('DEL', KEYS[1])
end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`);

/** The opening kept in KEYS[1], and how many ms it has left: { message or false, pttl }. */
export const READ = script(`
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
`);

/** Takes a probe lock for ARGV[2] ms as ARGV[1]: -1 when taken, else the ms it stays held. */
export const LOCK = script(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then return 0 end
return left
`);

/** Gives a probe lock back, only if ARGV[1] holds it. */
export const UNLOCK = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);
