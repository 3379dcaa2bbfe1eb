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

/// How a command's arguments are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The first argument is a key.
    Keyed,
    /// The first argument is a subcommand.
    Container,
    /// No argument is shown.
    Other,
    /// Not a command Redis has (or a name cut by the capture).
    Unknown,
}

/// What a command does to the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Select,
    Monitor,
    Reset,
    /// `CLIENT`: `CLIENT REPLY` changes which commands get replies.
    Client,
    /// A (P|S)(UN)SUBSCRIBE: index in [`SUBSCRIBE_KINDS`].
    Subscribe(u8),
}

/// A command, classified once per request from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) shape: Shape,
    pub(crate) special: Special,
}

impl Class {
    pub(crate) const UNKNOWN: Class = Class {
        shape: Shape::Unknown,
        special: Special::None,
    };
}

/// Lower-case words of pub/sub confirmations, in [`Special::Subscribe`]
/// order.
pub(crate) const SUBSCRIBE_KINDS: [&str; 6] = [
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

/// Classifies a command name (one table lookup per request).
pub(crate) fn classify(name: &[u8]) -> Class {
    let mut buf = [0u8; NAME_MAX];
    let Some(u) = upper(name, &mut buf) else {
        return Class::UNKNOWN;
    };
    let shape = if listed(KEYED, u) {
        Shape::Keyed
    } else if listed(CONTAINERS, u) {
        Shape::Container
    } else if listed(OTHERS, u) {
        Shape::Other
    } else {
        return Class::UNKNOWN;
    };
    let special = match u {
        "SELECT" => Special::Select,
        "MONITOR" => Special::Monitor,
        "RESET" => Special::Reset,
        "CLIENT" => Special::Client,
        _ if u.ends_with("SUBSCRIBE") => SUBSCRIBE_KINDS
            .iter()
            .position(|k| k.eq_ignore_ascii_case(u))
            .map_or(Special::None, |i| Special::Subscribe(i as u8)),
        _ => Special::None,
    };
    Class { shape, special }
}

/// A command name Redis has (for detection and resync).
pub(crate) fn is_known(name: &[u8]) -> bool {
    classify(name).shape != Shape::Unknown
}

/// How many bytes of argument `index` the reader keeps: the key of a
/// keyed command, a subcommand, the index of `SELECT`, the mode of
/// `CLIENT REPLY`. Nothing else, so passwords and values are never held.
pub(crate) fn keep(class: Class, index: usize) -> usize {
    match (index, class.shape, class.special) {
        (1, Shape::Keyed, _) => ARG_KEEP,
        (1, Shape::Container, _) => NAME_MAX,
        (2, _, Special::Client) => 8,
        (1, _, Special::Select) => 8,
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
    let mut buf = [0u8; NAME_MAX];
    let Some(upper_name) = upper(msg.arg(0), &mut buf).filter(|_| !msg.args.cut(0)) else {
        return Summary {
            operation: CompactString::default(),
            text: None,
            truncated: msg.partial,
        };
    };
    let mut operation = CompactString::from(upper_name);
    // Short texts (`GET user:1`) stay inline in the CompactString: no
    // allocation per command.
    let mut text = CompactString::with_capacity(upper_name.len() + 16);
    text.push_str(upper_name);
    let mut shown = 1u64;
    let mut truncated = msg.partial;
    match msg.class.shape {
        Shape::Container if msg.count >= 2 => {
            let mut sub = [0u8; NAME_MAX];
            if let Some(s) = upper(msg.arg(1), &mut sub).filter(|_| !msg.args.cut(1)) {
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
            truncated |= msg.args.cut(1);
            shown = 2;
        }
        _ => {}
    }
    let rest = msg.count.saturating_sub(shown);
    let room = (max_len.saturating_sub(text.len()) / 2) as u64;
    for _ in 0..rest.min(room) {
        text.push_str(" ?");
    }
    if rest > room {
        truncated = true;
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
        text: Some(text),
        truncated,
    }
}

/// A key as text: valid UTF-8 kept, anything unprintable (controls,
/// invalid bytes, whitespace that would blur the argument boundaries)
/// shown as `?`.
fn push_key(text: &mut CompactString, key: &[u8]) {
    if key.iter().all(|b| (0x21..0x7f).contains(b)) {
        // Printable ASCII, the usual key: as is.
        text.push_str(std::str::from_utf8(key).unwrap_or_default());
        return;
    }
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
