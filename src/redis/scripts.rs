//! The Lua scripts Redis runs for each decision, and the reading of their replies.
//!
//! Every script reads the server's clock (`TIME`), so instances whose clocks disagree still
//! agree on every decision, and writes its numbers with `string.format('%.0f')`: Lua 5.1's
//! numbers are doubles, which `tostring` and Redis's own conversion would print in exponent
//! form past 14 digits (a timestamp in microseconds has 16). Every time is an integer below
//! 2^53, where doubles are exact; the configs refuse limits that could leave that range.
//!
//! Reading `TIME` before writing needs scripts replicated by their effects, the default since
//! Redis 5.0, the oldest server these scripts support.

use ::redis::{Script, Value};

use crate::error::LinkFailure;

/// GCRA on one key holding the theoretical arrival time (TAT) in microseconds of the
/// server's clock.
///
/// KEYS[1]: the bucket. ARGV: interval (µs per token), burst, cost, max wait (µs),
/// batch (tokens to take when the bucket has them; the cost when not reserving).
///
/// A call of `cost` is conformant from `tat + (cost - burst) × interval`. Admitted when that
/// instant is at most `max_wait` away; a call with a wait takes its turn now and waits for it
/// in the client. A conformant call with nothing to wait for takes up to `batch` tokens (at
/// least its cost) when the bucket holds them. The key expires when its bucket is full
/// again, so an idle key vanishes by itself.
///
/// Returns `{admitted, wait_us, taken, tat}`: `wait_us` is the wait of an admitted call, or
/// the time until a refused one would be admitted; `tat` the new TAT of an admitted call
/// (for giving a cancelled turn back).
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local batch = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]))
-- Missing, not a number, NaN, or past any TAT a limit can set (its burst and a day's wait
-- ahead): a fresh, full bucket. Garbage must not make a key undecidable for ever.
if tat == nil or tat ~= tat or tat < now or tat > now + burst * interval + 86400000000 then
  tat = now
end
local wait = tat + (cost - burst) * interval - now
if wait > max_wait then
  return {0, wait, 0, tat}
end
local take = cost
if wait <= 0 and batch > cost then
  local held = math.floor((now + burst * interval - tat) / interval)
  take = math.min(batch, held)
end
local new_tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', string.format('%.0f', math.max(1, math.ceil((new_tat - now) / 1000))))
if wait < 0 then wait = 0 end
return {1, wait, take, new_tat}
";

/// Gives a cancelled waiter's turn back: moves the TAT back by `amount` µs, but only if it
/// is still the one that call set (no later call took a turn behind it, which would then
/// share an instant with a newcomer).
///
/// KEYS[1]: the bucket. ARGV: the TAT the call set (as the client printed it), amount.
/// Returns 1 when given back.
const GIVE_BACK: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local back = tonumber(ARGV[1]) - tonumber(ARGV[2])
if back <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', back),
    'PX', string.format('%.0f', math.max(1, math.ceil((back - now) / 1000))))
end
return 1
";

/// Takes a session lease: a member of the key's sorted set scored by its expiry in
/// milliseconds of the server's clock. Expired leases (a crashed holder's) are dropped
/// first. The key expires with its last lease.
///
/// KEYS[1]: the set. ARGV: max per key, lease TTL (ms), lease id.
/// Returns `{admitted, leases}` (the count held, this one included when admitted).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
local exp = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', exp), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.max(exp, tonumber(last[2]))))
return {1, n + 1}
";

/// Renews a lease that is still held (present in the set, even past its expiry: its place
/// was never given away until a purge removed it). A lease the server lost (a restart
/// without persistence, a failover, a flush) while its call still runs is added back when
/// the key has room, so the call is counted again; when it has none, the lease is lost.
/// Returns 1 when renewed, 2 when added back, 0 when lost.
///
/// KEYS[1]: the set. ARGV: lease TTL (ms), lease id, max per key.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = now + tonumber(ARGV[1])
local renewed = 1
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
  renewed = 2
end
redis.call('ZADD', KEYS[1], string.format('%.0f', exp), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.max(exp, tonumber(last[2]))))
return renewed
";

/// The scripts, hashed once per link (`Script` keeps the SHA1 that `EVALSHA` sends; on
/// `NOSCRIPT`, after a restart or a `SCRIPT FLUSH`, the redis crate loads the script and
/// sends it again).
pub(crate) struct Scripts {
    pub(crate) take: Script,
    pub(crate) give_back: Script,
    pub(crate) acquire: Script,
    pub(crate) renew: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            take: Script::new(TAKE),
            give_back: Script::new(GIVE_BACK),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
        }
    }
}

/// The reply of [`TAKE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    pub(crate) admitted: bool,
    pub(crate) wait_us: u64,
    pub(crate) taken: u32,
    pub(crate) tat: u64,
}

/// The reply of [`ACQUIRE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquired {
    pub(crate) admitted: bool,
    pub(crate) held: u32,
}

/// Reads an array of exactly `N` non-negative integers; anything else is a malformed reply.
fn ints<const N: usize>(reply: &Value) -> Result<[u64; N], LinkFailure> {
    let Value::Array(items) = reply else {
        return Err(LinkFailure::MalformedReply);
    };
    if items.len() != N {
        return Err(LinkFailure::MalformedReply);
    }
    let mut out = [0u64; N];
    for (slot, item) in out.iter_mut().zip(items) {
        *slot = match item {
            Value::Int(n) => u64::try_from(*n).map_err(|_| LinkFailure::MalformedReply)?,
            _ => return Err(LinkFailure::MalformedReply),
        };
    }
    Ok(out)
}

pub(crate) fn read_take(
    reply: &Value,
    cost: u32,
    batch: u32,
    max_wait_us: u64,
) -> Result<Take, LinkFailure> {
    let [admitted, wait_us, taken, tat] = ints::<4>(reply)?;
    let admitted = match admitted {
        0 => false,
        1 => true,
        _ => return Err(LinkFailure::MalformedReply),
    };
    // An admitted call takes at least its cost and at most its batch: a reply outside that
    // (another script under the same name, a bug) must not admit more than asked.
    let taken = u32::try_from(taken).map_err(|_| LinkFailure::MalformedReply)?;
    if admitted && !(cost..=batch.max(cost)).contains(&taken) {
        return Err(LinkFailure::MalformedReply);
    }
    // Nor park the caller longer than it allowed.
    if admitted && wait_us > max_wait_us {
        return Err(LinkFailure::MalformedReply);
    }
    Ok(Take {
        admitted,
        wait_us,
        taken,
        tat,
    })
}

pub(crate) fn read_acquired(reply: &Value) -> Result<Acquired, LinkFailure> {
    let [admitted, held] = ints::<2>(reply)?;
    let admitted = match admitted {
        0 => false,
        1 => true,
        _ => return Err(LinkFailure::MalformedReply),
    };
    Ok(Acquired {
        admitted,
        held: u32::try_from(held).unwrap_or(u32::MAX),
    })
}

/// The reply of [`RENEW`]: renewed, added back, or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewReply {
    Kept,
    AddedBack,
    Lost,
}

pub(crate) fn read_renewed(reply: &Value) -> Result<RenewReply, LinkFailure> {
    match reply {
        Value::Int(1) => Ok(RenewReply::Kept),
        Value::Int(2) => Ok(RenewReply::AddedBack),
        Value::Int(0) => Ok(RenewReply::Lost),
        _ => Err(LinkFailure::MalformedReply),
    }
}

pub(crate) fn read_flag(reply: &Value) -> Result<bool, LinkFailure> {
    match reply {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        _ => Err(LinkFailure::MalformedReply),
    }
}
