//! What a span shows of a command: its name (`GET`, `CLIENT SETNAME`) and
//! `db.query.text` = the name, the key when the command's first argument
//! is one, and `?` for every other argument. Arguments are values,
//! passwords, scripts: none is ever kept beyond what this needs.

use compact_str::CompactString;

use super::resp::{ARG_KEEP, Msg};

/// Commands whose first argument is a key (or a channel): the key is
/// shown. Sorted, upper case (binary search).
const KEYED: &[&str] = &[
    "APPEND",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITPOS",
    "BLMOVE",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZPOPMAX",
    "BZPOPMIN",
    "COPY",
    "DECR",
    "DECRBY",
    "DEL",
    "DUMP",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MGET",
    "MOVE",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "PSETEX",
    "PSUBSCRIBE",
    "PTTL",
    "PUBLISH",
    "RENAME",
    "RENAMENX",
    "RESTORE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNIONSTORE",
];

/// Commands whose first argument is a subcommand (`CLIENT SETNAME`):
/// the operation is both words; every later argument is `?`.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Other commands, recognised (for detection) but shown with every
/// argument as `?`.
const OTHERS: &[&str] = &[
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITOP",
    "BLMPOP",
    "BZMPOP",
    "DBSIZE",
    "DISCARD",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "HELLO",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LMPOP",
    "MIGRATE",
    "MONITOR",
    "MULTI",
    "PING",
    "PSYNC",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "ROLE",
    "SAVE",
    "SCAN",
    "SELECT",
    "SHUTDOWN",
    "SINTERCARD",
    "SLAVEOF",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "XREAD",
    "XREADGROUP",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINTER",
    "ZINTERCARD",
    "ZMPOP",
    "ZUNION",
];

/// Longest command name kept.
pub(crate) const NAME_MAX: usize = 32;

/// `name` upper-cased into `buf`, if it is a plausible command name
/// (letters, digits, `_`, `.`, `-`, `|`; modules name theirs `JSON.SET`).
fn upper<'a>(name: &[u8], buf: &'a mut [u8; NAME_MAX]) -> Option<&'a str> {
    if name.is_empty() || name.len() > NAME_MAX {
        return None;
    }
    let dst = buf.get_mut(..name.len())?;
    for (d, &s) in dst.iter_mut().zip(name) {
        if !(s.is_ascii_alphanumeric() || matches!(s, b'_' | b'.' | b'-' | b'|')) {
            return None;
        }
        *d = s.to_ascii_uppercase();
    }
    std::str::from_utf8(dst).ok()
}

fn listed(list: &[&str], upper_name: &str) -> bool {
    list.binary_search(&upper_name).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Keyed,
    Container,
    Other,
    Unknown,
}

fn shape(name: &[u8]) -> Shape {
    let mut buf = [0u8; NAME_MAX];
    let Some(u) = upper(name, &mut buf) else {
        return Shape::Unknown;
    };
    if listed(KEYED, u) {
        Shape::Keyed
    } else if listed(CONTAINERS, u) {
        Shape::Container
    } else if listed(OTHERS, u) {
        Shape::Other
    } else {
        Shape::Unknown
    }
}

/// A command name Redis has (for detection and resync).
pub(crate) fn is_known(name: &[u8]) -> bool {
    shape(name) != Shape::Unknown
}

/// How many bytes of argument `index` the reader keeps: the key of a
/// keyed command, a subcommand, the index of `SELECT`, the mode of
/// `CLIENT REPLY`. Nothing else, so passwords and values are never held.
pub(crate) fn keep(command: &[u8], index: usize) -> usize {
    match (index, shape(command)) {
        (1, Shape::Keyed) => ARG_KEEP,
        (1, Shape::Container) => NAME_MAX,
        (2, Shape::Container) if command.eq_ignore_ascii_case(b"CLIENT") => 8,
        (1, Shape::Other) if command.eq_ignore_ascii_case(b"SELECT") => 8,
        _ => 0,
    }
}

/// A command as a span shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Upper case; empty when the name is not a plausible command name.
    pub(crate) operation: CompactString,
    pub(crate) text: Option<CompactString>,
    pub(crate) truncated: bool,
}

/// Operation name and sanitized text of a request.
pub(crate) fn summarize(msg: &Msg, max_len: usize) -> Summary {
    let name = msg.arg(0);
    let mut buf = [0u8; NAME_MAX];
    let Some(upper_name) = upper(name, &mut buf).filter(|_| !msg.args[0].cut) else {
        return Summary {
            operation: CompactString::default(),
            text: None,
            truncated: msg.partial,
        };
    };
    let mut operation = CompactString::from(upper_name);
    let mut text = String::with_capacity(upper_name.len() + 16);
    text.push_str(upper_name);
    let mut shown = 1u64;
    let mut truncated = msg.partial;
    match shape(name) {
        Shape::Container if msg.count >= 2 => {
            let mut sub = [0u8; NAME_MAX];
            if let Some(s) = upper(msg.arg(1), &mut sub).filter(|_| !msg.args[1].cut) {
                operation.push(' ');
                operation.push_str(s);
                text.push(' ');
                text.push_str(s);
                shown = 2;
            }
        }
        Shape::Keyed if msg.count >= 2 => {
            text.push(' ');
            push_key(&mut text, msg.arg(1));
            truncated |= msg.args[1].cut;
            shown = 2;
        }
        _ => {}
    }
    for _ in shown..msg.count {
        if text.len() + 2 > max_len {
            truncated = true;
            break;
        }
        text.push_str(" ?");
    }
    if text.len() > max_len {
        let mut cut = max_len;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    Summary {
        operation,
        text: Some(CompactString::from(text)),
        truncated,
    }
}

/// A key as text: valid UTF-8 kept, anything unprintable (controls,
/// invalid bytes, whitespace that would blur the argument boundaries)
/// shown as `?`.
fn push_key(text: &mut String, key: &[u8]) {
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            text.push(if c.is_control() || c.is_whitespace() {
                '?'
            } else {
                c
            });
        }
        if !chunk.invalid().is_empty() {
            text.push('?');
        }
    }
}

/// The error code of an error reply: its first word when it is one
/// (`ERR`, `WRONGTYPE`, `NOAUTH`), else `ERR`. Nothing else of the
/// message is kept (it may quote arguments).
pub(crate) fn error_code(message: &[u8]) -> CompactString {
    let word = message.split(|&b| b == b' ').next().unwrap_or_default();
    let ok = !word.is_empty()
        && word.len() <= 32
        && word
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    match std::str::from_utf8(word) {
        Ok(w) if ok => CompactString::from(w),
        _ => CompactString::const_new("ERR"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for list in [KEYED, CONTAINERS, OTHERS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
        for k in KEYED {
            assert!(!CONTAINERS.contains(k) && !OTHERS.contains(k), "{k}");
        }
        for k in CONTAINERS {
            assert!(!OTHERS.contains(k), "{k}");
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(b"WRONGTYPE Operation against a key"),
            "WRONGTYPE"
        );
        assert_eq!(error_code(b"ERR unknown command 'x'"), "ERR");
        assert_eq!(error_code(b"user_script:1: boom"), "ERR");
        assert_eq!(error_code(b""), "ERR");
    }
}
