//! SQL text as spans show it: the operation (`SELECT`), the main table,
//! and the statement with every literal replaced by `?`, whatever the
//! client sent (literals carry user data: they never leave the agent).

use compact_str::CompactString;

/// Quoting rules that differ between servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `"x"` is an identifier; `$tag$…$tag$` and `E'…'` are strings.
    Postgres,
    /// `"x"` is a string (unless ANSI_QUOTES, which clients rarely set:
    /// taking it as a string can only hide more, never leak);
    /// `` `x` `` is an identifier; `\` escapes inside strings.
    Mysql,
}

/// What a span needs of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSummary {
    /// First keyword, upper case (`SELECT`, `INSERT`, …); empty if none.
    pub operation: CompactString,
    /// Main table, when it could be told.
    pub collection: Option<CompactString>,
    /// The statement with literals replaced by `?`.
    pub text: CompactString,
    /// The statement was cut (by the capture or by `max_len`).
    pub truncated: bool,
}

/// Summarizes `sql` (the captured bytes of one statement; `truncated` when
/// the capture cut it). Keeps at most `max_len` bytes of sanitized text.
pub fn summarize(sql: &[u8], dialect: Dialect, truncated: bool, max_len: usize) -> SqlSummary {
    let (text, cut) = sanitize(sql, dialect, max_len);
    let operation = first_keyword(&text);
    SqlSummary {
        operation,
        collection: None,
        text,
        truncated: truncated || cut,
    }
}

/// Replaces string, numeric and other literals by `?`; identifiers,
/// keywords, operators and comments' absence are kept. A literal cut by
/// the end of the input is still replaced (never half shown).
pub fn sanitize(sql: &[u8], dialect: Dialect, max_len: usize) -> (CompactString, bool) {
    let mut out = String::with_capacity(sql.len().min(max_len));
    let mut i = 0;
    let at = |i: usize| sql.get(i).copied();
    let mut cut = false;
    while let Some(b) = at(i) {
        if out.len() >= max_len {
            cut = true;
            break;
        }
        match b {
            b'\'' => {
                i = skip_quoted(sql, i, b'\'', dialect == Dialect::Mysql);
                out.push('?');
            }
            b'"' if dialect == Dialect::Mysql => {
                i = skip_quoted(sql, i, b'"', true);
                out.push('?');
            }
            b'E' | b'e' | b'B' | b'b' | b'X' | b'x' | b'N' | b'n'
                if at(i + 1) == Some(b'\'') && !prev_is_word(sql, i) =>
            {
                i = skip_quoted(sql, i + 1, b'\'', true);
                out.push('?');
            }
            b'$' if dialect == Dialect::Postgres => {
                // $1 parameters stay; $tag$…$tag$ strings go.
                if let Some(end) = dollar_quote_end(sql, i) {
                    i = end;
                    out.push('?');
                } else {
                    out.push('$');
                    i += 1;
                    while let Some(d) = at(i).filter(u8::is_ascii_digit) {
                        out.push(char::from(d));
                        i += 1;
                    }
                }
            }
            b'-' if at(i + 1) == Some(b'-') => {
                // Comments may hold anything: dropped.
                while at(i).is_some_and(|c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if at(i + 1) == Some(b'*') => {
                i += 2;
                while at(i).is_some() && !(at(i) == Some(b'*') && at(i + 1) == Some(b'/')) {
                    i += 1;
                }
                i = (i + 2).min(sql.len());
            }
            b'#' if dialect == Dialect::Mysql => {
                while at(i).is_some_and(|c| c != b'\n') {
                    i += 1;
                }
            }
            b'0'..=b'9' if !prev_is_word(sql, i) => {
                i += 1;
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_') {
                    i += 1;
                }
                out.push('?');
            }
            b'.' if at(i + 1).is_some_and(|c| c.is_ascii_digit()) && !prev_is_word(sql, i) => {
                i += 1;
                while at(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push('?');
            }
            _ if b.is_ascii_whitespace() => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
                i += 1;
            }
            _ if b.is_ascii() && !b.is_ascii_control() => {
                out.push(char::from(b));
                i += 1;
            }
            _ => {
                // Non-ASCII in identifiers: kept as the replacement
                // character (text stays valid UTF-8 whatever was sent).
                if !out.ends_with('\u{fffd}') {
                    out.push('\u{fffd}');
                }
                i += 1;
            }
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    (CompactString::from(out), cut)
}

fn prev_is_word(sql: &[u8], i: usize) -> bool {
    i.checked_sub(1)
        .and_then(|p| sql.get(p))
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
}

/// Index after the closing quote of a string opened at `start`.
fn skip_quoted(sql: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while let Some(&c) = sql.get(i) {
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    sql.len()
}

/// For `$tag$…$tag$` at `start`, the index after the closing delimiter
/// (the end of input if it is missing).
fn dollar_quote_end(sql: &[u8], start: usize) -> Option<usize> {
    let rest = sql.get(start + 1..)?;
    let tag_len = rest.iter().position(|&c| c == b'$').filter(|&n| {
        rest.get(..n).is_some_and(|t| {
            t.first().is_none_or(|c| !c.is_ascii_digit())
                && t.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
        })
    })?;
    let delim = sql.get(start..start + tag_len + 2)?;
    let body = start + tag_len + 2;
    let tail = sql.get(body..)?;
    Some(memchr::memmem::find(tail, delim).map_or(sql.len(), |p| body + p + delim.len()))
}

/// First keyword of sanitized text, upper case.
fn first_keyword(text: &str) -> CompactString {
    let word = text
        .trim_start_matches(['(', ' ', ';'])
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    CompactString::from(word.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> String {
        sanitize(s.as_bytes(), Dialect::Postgres, 4096)
            .0
            .to_string()
    }

    #[test]
    fn literals_never_survive() {
        assert_eq!(
            pg("SELECT * FROM t WHERE a = 'secret' AND b = 42 AND c = 1.5e3"),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?"
        );
        assert_eq!(pg("SELECT $$hidden$$, $q$x$q$, $1"), "SELECT ?, ?, $1");
        assert_eq!(pg("SELECT E'a\\'b', 'it''s'"), "SELECT ?, ?");
        assert_eq!(pg("SELECT 'cut at the end"), "SELECT ?");
        assert_eq!(pg("SELECT t1.c2 FROM t1 -- 'x'\n"), "SELECT t1.c2 FROM t1");
        assert_eq!(
            sanitize(b"SELECT \"pw\" FROM `t` # 1", Dialect::Mysql, 99).0,
            "SELECT ? FROM `t`"
        );
        let s = summarize(b"  select 1", Dialect::Postgres, false, 4096);
        assert_eq!(
            (s.operation.as_str(), s.text.as_str()),
            ("SELECT", "select ?")
        );
    }
}
