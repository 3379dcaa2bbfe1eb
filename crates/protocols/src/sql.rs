//! SQL text as spans show it: the operation (`SELECT`), the main table,
//! and the statement with every literal replaced by `?`, whatever the
//! client sent (literals carry user data: they never leave the agent).
//!
//! One hand-written lexer serves three readers: the sanitizer (every
//! token, once), the summary (the first few tokens: operation and main
//! table) and the statement splitter (top-level `;`). It never fails: any
//! byte sequence lexes, and a literal cut by the end of the input is still
//! a literal (replaced, never half shown).

use compact_str::CompactString;

/// Quoting rules that differ between servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `"x"` is an identifier; `$tag$…$tag$`, `E'…'`, `U&'…'` are strings;
    /// `/* */` comments nest; `$1` is a parameter.
    Postgres,
    /// `"x"` is a string (unless ANSI_QUOTES, which clients rarely set:
    /// taking it as a string can only hide more, never leak);
    /// `` `x` `` is an identifier; `\` escapes inside strings; `#` starts
    /// a comment; `?` is a parameter.
    Mysql,
}

/// What a span needs of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSummary {
    /// First keyword, upper case (`SELECT`, `INSERT`, …); for `WITH …`
    /// the main statement's keyword; empty if none.
    pub operation: CompactString,
    /// Main table (schema-qualified as written, quotes removed), when it
    /// could be told.
    pub collection: Option<CompactString>,
    /// The statement with literals replaced by `?`.
    pub text: CompactString,
    /// The statement was cut (by the capture or by `max_len`).
    pub truncated: bool,
}

impl SqlSummary {
    /// Approximate bytes held beyond its own size (strings by length).
    pub fn heap_bytes(&self) -> usize {
        self.operation.len() + self.collection.as_ref().map_or(0, |c| c.len()) + self.text.len()
    }
}

/// Summarizes `sql` (the captured bytes of one statement; `truncated` when
/// the capture cut it). Keeps at most `max_len` bytes of sanitized text.
pub fn summarize(sql: &[u8], dialect: Dialect, truncated: bool, max_len: usize) -> SqlSummary {
    summarize_as(sql, dialect, truncated, max_len, false)
}

/// [`summarize`], keeping the text as sent when `raw` (see [`raw_text`]).
pub fn summarize_as(
    sql: &[u8],
    dialect: Dialect,
    truncated: bool,
    max_len: usize,
    raw: bool,
) -> SqlSummary {
    let (text, cut) = match raw.then(|| raw_text(sql, dialect, max_len)).flatten() {
        Some(t) => t,
        None => sanitize(sql, dialect, max_len),
    };
    let (operation, collection) = analyze(sql, dialect, truncated);
    SqlSummary {
        operation,
        collection,
        text,
        truncated: truncated || cut,
    }
}

/// The statement as sent (invalid UTF-8 replaced, at most `max_len`
/// bytes, and whether it was cut), for users who opt in to literals; None
/// when a token says it sets a password (`PASSWORD`, MySQL's
/// `IDENTIFIED`): those are only ever shown sanitized.
pub fn raw_text(sql: &[u8], dialect: Dialect, max_len: usize) -> Option<(CompactString, bool)> {
    let mut lx = Lexer::new(sql, dialect);
    while let Some(t) = lx.next_token() {
        if let Tok::Word(w) = t.tok
            && (w.eq_ignore_ascii_case(b"PASSWORD") || w.eq_ignore_ascii_case(b"IDENTIFIED"))
        {
            return None;
        }
    }
    let text = String::from_utf8_lossy(sql);
    let text = text.trim();
    if text.len() <= max_len {
        return Some((CompactString::from(text), false));
    }
    let mut cut = max_len;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some((
        CompactString::from(text.get(..cut).unwrap_or_default()),
        true,
    ))
}

/// Longest collection name kept (three quoted 63-byte parts fit).
const MAX_COLLECTION: usize = 200;
/// Longest operation keyword kept.
const MAX_OPERATION: usize = 32;

// ---------------------------------------------------------------- lexer

/// One token. Slices borrow the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// Keyword or bare identifier.
    Word(&'a [u8]),
    /// Quoted identifier, quotes included (`"x"`, `` `x` ``, `U&"x"`).
    Ident(&'a [u8]),
    /// Any literal: string, number, bit/hex string, dollar-quoted body.
    Lit,
    /// A bind parameter: `$1` (PostgreSQL), `?` (MySQL).
    Param(&'a [u8]),
    /// Any other byte (operators, punctuation).
    Punct(u8),
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Whitespace or a comment came before it.
    space: bool,
    /// Index of its first byte.
    start: usize,
    /// Index just after the token.
    end: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lexer<'a> {
    sql: &'a [u8],
    i: usize,
    dialect: Dialect,
}

const SPACE: u8 = 1;
const WORD_START: u8 = 2;
const WORD_CHAR: u8 = 4;

/// Byte classes, looked up once per byte.
#[allow(clippy::indexing_slicing)] // const evaluation: i < 256 is checked at build time
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut v = 0;
        if c <= b' ' || c == 0x7f {
            v |= SPACE;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            v |= WORD_START | WORD_CHAR;
        }
        if c.is_ascii_digit() || c == b'$' {
            v |= WORD_CHAR;
        }
        t[i] = v;
        i += 1;
    }
    t
};

fn class(c: u8) -> u8 {
    // A u8 indexes a 256-entry table: never out of bounds.
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

fn is_word_start(c: u8) -> bool {
    class(c) & WORD_START != 0
}

fn is_word_char(c: u8) -> bool {
    class(c) & WORD_CHAR != 0
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a [u8], dialect: Dialect) -> Self {
        Lexer { sql, i: 0, dialect }
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.sql.get(i).copied()
    }

    /// Skips whitespace, control bytes and comments; true if any.
    fn skip_space(&mut self) -> bool {
        let start = self.i;
        while let Some(c) = self.at(self.i) {
            match c {
                b'-' if self.at(self.i + 1) == Some(b'-') => {
                    self.i = memchr::memchr(b'\n', self.sql.get(self.i..).unwrap_or_default())
                        .map_or(self.sql.len(), |p| self.i + p + 1);
                }
                b'#' if self.dialect == Dialect::Mysql => {
                    self.i = memchr::memchr(b'\n', self.sql.get(self.i..).unwrap_or_default())
                        .map_or(self.sql.len(), |p| self.i + p + 1);
                }
                b'/' if self.at(self.i + 1) == Some(b'*') => self.skip_block_comment(),
                _ if class(c) & SPACE != 0 => self.i += 1,
                _ => break,
            }
        }
        self.i > start
    }

    /// `/* … */`, nested in PostgreSQL (an unnested reading would end the
    /// comment early and show the rest of it).
    fn skip_block_comment(&mut self) {
        let nest = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        while let Some(c) = self.at(self.i) {
            let next = self.at(self.i + 1);
            if c == b'/' && next == Some(b'*') && (nest || depth == 0) {
                depth += 1;
                self.i += 2;
            } else if c == b'*' && next == Some(b'/') {
                self.i += 2;
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            } else {
                self.i += 1;
            }
        }
    }

    /// Index after the closing `quote` of a string whose opening quote is
    /// at `start` (the end of input if it is missing).
    fn quoted_end(&self, start: usize, quote: u8, backslash: bool) -> usize {
        self.quoted_close(start, quote, backslash)
            .unwrap_or(self.sql.len())
    }

    /// A quoted identifier at `start` (`"x"`, `` `x` ``); one left open
    /// is taken as a literal to the end: whatever follows the quote may
    /// be a literal the client sent, and must not be shown.
    fn quoted_ident(&self, start: usize, quote: u8) -> (Tok<'a>, usize) {
        match self.quoted_close(start, quote, false) {
            Some(end) => (
                Tok::Ident(self.sql.get(start..end).unwrap_or_default()),
                end,
            ),
            None => (Tok::Lit, self.sql.len()),
        }
    }

    /// The index after the quote closing the one at `start`; None when
    /// the input ends first.
    fn quoted_close(&self, start: usize, quote: u8, backslash: bool) -> Option<usize> {
        let mut i = start + 1;
        while let Some(rest) = self.sql.get(i..) {
            let found = if backslash {
                memchr::memchr2(quote, b'\\', rest)
            } else {
                memchr::memchr(quote, rest)
            };
            let Some(p) = found else {
                break;
            };
            i += p;
            if self.at(i) == Some(b'\\') && quote != b'\\' {
                i += 2;
                continue;
            }
            if self.at(i + 1) == Some(quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        None
    }

    /// For `$tag$…$tag$` at `start`, the index after the closing delimiter
    /// (the end of input if it is missing); None if no tag opens here.
    fn dollar_quote_end(&self, start: usize) -> Option<usize> {
        let rest = self.sql.get(start + 1..)?;
        let n = memchr::memchr(b'$', rest)?;
        let tag = rest.get(..n)?;
        let tag_ok = tag.first().is_none_or(|c| !c.is_ascii_digit())
            && tag
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80);
        if !tag_ok {
            return None;
        }
        let delim = self.sql.get(start..start + n + 2)?;
        let body = start + n + 2;
        let tail = self.sql.get(body..).unwrap_or_default();
        Some(memchr::memmem::find(tail, delim).map_or(self.sql.len(), |p| body + p + delim.len()))
    }

    /// Index after a number starting at `start` (digits, `.`, exponent,
    /// `0x…`/`0b…` and any letters glued to it: all one literal).
    fn number_end(&self, start: usize) -> usize {
        let mut i = start;
        while let Some(c) = self.at(i) {
            if (c == b'e' || c == b'E')
                && matches!(self.at(i + 1), Some(b'+' | b'-'))
                && self.at(i + 2).is_some_and(|d| d.is_ascii_digit())
            {
                i += 3;
            } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
                i += 1;
            } else {
                break;
            }
        }
        i
    }

    fn next_token(&mut self) -> Option<Token<'a>> {
        let space = self.skip_space();
        let start = self.i;
        let c = self.at(start)?;
        let next = self.at(start + 1);
        let my = self.dialect == Dialect::Mysql;
        let (tok, end) = match c {
            b'\'' => (Tok::Lit, self.quoted_end(start, b'\'', my)),
            b'"' if my => (Tok::Lit, self.quoted_end(start, b'"', true)),
            b'"' => self.quoted_ident(start, b'"'),
            b'`' if my => self.quoted_ident(start, b'`'),
            b'0'..=b'9' => (Tok::Lit, self.number_end(start)),
            b'.' if next.is_some_and(|d| d.is_ascii_digit()) => (Tok::Lit, self.number_end(start)),
            b'$' if !my => {
                if next.is_some_and(|d| d.is_ascii_digit()) {
                    let mut end = start + 1;
                    while self.at(end).is_some_and(|d| d.is_ascii_digit()) {
                        end += 1;
                    }
                    (
                        Tok::Param(self.sql.get(start..end).unwrap_or_default()),
                        end,
                    )
                } else if let Some(end) = self.dollar_quote_end(start) {
                    (Tok::Lit, end)
                } else {
                    (Tok::Punct(b'$'), start + 1)
                }
            }
            b'?' if my => (Tok::Param(b"?"), start + 1),
            _ if is_word_start(c) => self.word(start),
            _ => (Tok::Punct(c), start + 1),
        };
        self.i = end.max(start + 1).min(self.sql.len());
        Some(Token {
            tok,
            space,
            start,
            end: self.i,
        })
    }

    /// A word at `start`, or the prefixed literal it opens (`E'…'`,
    /// `X'…'`, `U&'…'`, MySQL `_utf8mb4'…'`) or prefixed identifier
    /// (`U&"…"`).
    fn word(&self, start: usize) -> (Tok<'a>, usize) {
        let tail = self.sql.get(start + 1..).unwrap_or_default();
        let end = start
            + 1
            + tail
                .iter()
                .position(|&c| !is_word_char(c))
                .unwrap_or(tail.len());
        let word = self.sql.get(start..end).unwrap_or_default();
        let after = self.at(end);
        let my = self.dialect == Dialect::Mysql;
        if after == Some(b'\'') {
            let prefix = match word {
                [b'e' | b'E'] => Some(true),
                [b'b' | b'B' | b'x' | b'X'] => Some(my),
                [b'n' | b'N'] => Some(my),
                [b'_', ..] if my => Some(true),
                _ => None,
            };
            if let Some(backslash) = prefix {
                return (Tok::Lit, self.quoted_end(end, b'\'', backslash));
            }
        }
        if matches!(word, [b'u' | b'U']) && after == Some(b'&') && !my {
            match self.at(end + 1) {
                Some(b'\'') => return (Tok::Lit, self.quoted_end(end + 1, b'\'', false)),
                Some(b'"') => {
                    return match self.quoted_close(end + 1, b'"', false) {
                        Some(close) => (
                            Tok::Ident(self.sql.get(start..close).unwrap_or_default()),
                            close,
                        ),
                        None => (Tok::Lit, self.sql.len()),
                    };
                }
                _ => {}
            }
        }
        (Tok::Word(word), end)
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;
    fn next(&mut self) -> Option<Token<'a>> {
        self.next_token()
    }
}

fn is_kw(tok: &Tok<'_>, kw: &str) -> bool {
    matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw.as_bytes()))
}

fn is_any_kw(tok: &Tok<'_>, kws: &[&str]) -> bool {
    kws.iter().any(|k| is_kw(tok, k))
}

// ------------------------------------------------------------ sanitizer

/// Appends `bytes` (an identifier, keyword or operator as sent) keeping
/// the text valid UTF-8 and free of control characters.
fn push_clean(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().all(|&c| (b' '..0x7f).contains(&c)) {
        out.extend_from_slice(bytes);
        return;
    }
    for ch in String::from_utf8_lossy(bytes).chars() {
        let ch = if ch.is_control() { '\u{fffd}' } else { ch };
        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
    }
}

/// Text built as bytes (only whole UTF-8 characters are pushed) into a
/// CompactString.
fn into_text(out: Vec<u8>) -> CompactString {
    match String::from_utf8(out) {
        Ok(s) => CompactString::from(s),
        // Unreachable (whole characters only); shown lossily if not.
        Err(e) => CompactString::from(String::from_utf8_lossy(e.as_bytes())),
    }
}

/// Collapsing of `IN (?, ?, …)` lists into `IN (?)`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InList {
    Off,
    /// Just emitted `IN`.
    AfterIn,
    /// Just emitted `IN (`.
    Open,
    /// Emitted `IN (?`; holding back `, ?` pairs (and a trailing comma)
    /// until the list proves to be literals only.
    Held {
        pairs: u32,
        comma: bool,
    },
}

/// Replaces string, numeric and other literals by `?`; identifiers,
/// keywords, operators and parameters are kept, comments dropped,
/// whitespace runs become one space, and `IN` lists of literals collapse
/// to `IN (?)`. Returns the text (at most `max_len` bytes) and whether it
/// was cut to fit.
pub fn sanitize(sql: &[u8], dialect: Dialect, max_len: usize) -> (CompactString, bool) {
    let mut lx = Lexer::new(sql, dialect);
    match sanitize_next(&mut lx, max_len, false) {
        Some(s) => (into_text(s.text), s.cut),
        None => (CompactString::default(), false),
    }
}

/// One statement's sanitized text and where it was.
struct Sanitized {
    text: Vec<u8>,
    cut: bool,
    start: usize,
    end: usize,
    /// The input ended it (no `;` after it).
    last: bool,
}

/// Sanitizes from the lexer's position: to the end of input, or (`split`)
/// to the next top-level `;`, skipping empty statements. None when no
/// token is left (split) .
fn sanitize_next(lx: &mut Lexer<'_>, max_len: usize, split: bool) -> Option<Sanitized> {
    let mut out = Vec::with_capacity(lx.sql.len().saturating_sub(lx.i).min(max_len));
    let mut list = InList::Off;
    let mut cut = false;
    let mut start = None;
    let mut end = lx.i;
    let mut depth = 0u32;
    let mut last = true;
    for t in lx.by_ref() {
        if split {
            match t.tok {
                Tok::Punct(b';') if depth == 0 => {
                    if start.is_none() {
                        continue;
                    }
                    last = false;
                    break;
                }
                Tok::Punct(b'(') => depth = depth.saturating_add(1),
                Tok::Punct(b')') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        start.get_or_insert(t.start);
        end = t.end;
        if cut {
            if split {
                // Past the length cap: only the statement's end matters.
                continue;
            }
            break;
        }
        if !emit_token(&mut out, &mut list, &t, max_len) {
            cut = true;
        }
    }
    // Input ending inside a held list (cut by the capture) shows `IN (?`.
    if split && start.is_none() {
        return None;
    }
    let start = start.unwrap_or(end);
    Some(Sanitized {
        text: out,
        cut,
        start,
        end,
        last,
    })
}

/// Appends one token's sanitized form; false if it does not fit.
fn emit_token(out: &mut Vec<u8>, list: &mut InList, t: &Token<'_>, max_len: usize) -> bool {
    let literal = matches!(t.tok, Tok::Lit | Tok::Param(b"?"));
    match *list {
        InList::Held { pairs, comma } => {
            match t.tok {
                Tok::Punct(b',') if !comma => {
                    *list = InList::Held { pairs, comma: true };
                    return true;
                }
                _ if comma && literal => {
                    *list = InList::Held {
                        pairs: pairs.saturating_add(1),
                        comma: false,
                    };
                    return true;
                }
                Tok::Punct(b')') if !comma => {}
                _ => {
                    // Not a plain list: give back what was held.
                    for _ in 0..pairs {
                        if !push_piece(out, ", ?", false, max_len) {
                            return false;
                        }
                    }
                    if comma && !push_piece(out, ",", false, max_len) {
                        return false;
                    }
                }
            }
            *list = InList::Off;
        }
        InList::Open if literal => {
            *list = InList::Held {
                pairs: 0,
                comma: false,
            };
            return push_piece(out, "?", t.space, max_len);
        }
        InList::AfterIn if t.tok == Tok::Punct(b'(') => *list = InList::Open,
        _ => *list = InList::Off,
    }
    if is_kw(&t.tok, "IN") {
        *list = InList::AfterIn;
    }
    match t.tok {
        Tok::Lit => push_piece(out, "?", t.space, max_len),
        // Puncts are printable ASCII (control bytes are space, others
        // start words).
        Tok::Punct(c) => push_piece(
            out,
            char::from(c).encode_utf8(&mut [0; 4]),
            t.space,
            max_len,
        ),
        Tok::Word(w) | Tok::Ident(w) | Tok::Param(w) => {
            let space = t.space && !out.is_empty();
            if w.len() > max_len.saturating_sub(out.len() + usize::from(space)) {
                return false;
            }
            if space {
                out.push(b' ');
            }
            push_clean(out, w);
            if out.len() > max_len {
                // Replacement characters grew it: cut on a character
                // boundary (not on a continuation byte).
                let mut at = max_len;
                while out.get(at).is_some_and(|&c| c & 0xc0 == 0x80) {
                    at -= 1;
                }
                out.truncate(at);
                return false;
            }
            true
        }
    }
}

/// Pushes `piece` (preceded by a space when `space` and the text is not
/// empty) if it fits in `max_len`.
fn push_piece(out: &mut Vec<u8>, piece: &str, space: bool, max_len: usize) -> bool {
    let space = space && !out.is_empty();
    if out.len() + usize::from(space) + piece.len() > max_len {
        return false;
    }
    if space {
        out.push(b' ');
    }
    out.extend_from_slice(piece.as_bytes());
    true
}

// ------------------------------------------------------------- summary

/// Operation and main table of one statement.
fn analyze(
    sql: &[u8],
    dialect: Dialect,
    truncated: bool,
) -> (CompactString, Option<CompactString>) {
    let mut lx = Lexer::new(sql, dialect);
    // A token touching the end of a cut input may itself be cut.
    let whole = |t: &Token<'_>| !(truncated && t.end >= sql.len());
    let mut first = lx.next();
    while let Some(t) = first.filter(|t| t.tok == Tok::Punct(b'(')) {
        let _ = t;
        first = lx.next();
    }
    let Some(t) = first else {
        return (CompactString::default(), None);
    };
    let Tok::Word(w) = t.tok else {
        return (CompactString::default(), None);
    };
    if !whole(&t)
        || w.len() > MAX_OPERATION
        || !w.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return (CompactString::default(), None);
    }
    let mut op = w;
    if w.eq_ignore_ascii_case(b"WITH") {
        // The main statement follows the common table expressions, at
        // the same depth as WITH.
        let mut depth = 0i32;
        let mut found = None;
        for t in lx.by_ref() {
            match t.tok {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => depth -= 1,
                Tok::Punct(b';') if depth <= 0 => break,
                Tok::Word(m)
                    if depth == 0
                        && whole(&t)
                        && is_any_kw(
                            &t.tok,
                            &["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"],
                        ) =>
                {
                    found = Some(m);
                    break;
                }
                _ => {}
            }
            if depth < 0 {
                break;
            }
        }
        match found {
            Some(m) => op = m,
            None => return (upper(w), None),
        }
    }
    let operation = upper(op);
    let collection = collection(&operation, lx, sql.len(), truncated);
    (operation, collection)
}

/// `w` (an ASCII word of at most [`MAX_OPERATION`] bytes) in upper case.
fn upper(w: &[u8]) -> CompactString {
    let mut buf = [0u8; MAX_OPERATION];
    for (d, c) in buf.iter_mut().zip(w) {
        *d = c.to_ascii_uppercase();
    }
    let n = w.len().min(MAX_OPERATION);
    std::str::from_utf8(buf.get(..n).unwrap_or_default())
        .map(CompactString::from)
        .unwrap_or_default()
}

/// Words that end a table reference (what follows is not part of it and
/// not another table of the same list).
const AFTER_TABLE: &[&str] = &[
    "WHERE",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "WINDOW",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "RETURNING",
    "SET",
    "VALUES",
    "ON",
    "USING",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "STRAIGHT_JOIN",
    "SELECT",
    "FROM",
    "TO",
    "FETCH",
    "FOR",
    "WITH",
    "DEFAULT",
    "OVERRIDING",
    "PARTITION",
    "LOCK",
    "INTO",
    "TABLESAMPLE",
];

/// Main table of a statement whose operation keyword was just read.
fn collection(op: &str, mut lx: Lexer<'_>, len: usize, truncated: bool) -> Option<CompactString> {
    let lx = &mut lx;
    let (t, from_clause) = match op {
        "SELECT" => {
            // The first FROM at the statement's own depth (not one inside
            // a function call or a subquery of the select list).
            let mut depth = 0u32;
            loop {
                let t = lx.next()?;
                match t.tok {
                    Tok::Punct(b'(') => depth += 1,
                    Tok::Punct(b')') => depth = depth.checked_sub(1)?,
                    Tok::Punct(b';') if depth == 0 => return None,
                    _ if depth == 0 && is_any_kw(&t.tok, &["UNION", "EXCEPT", "INTERSECT"]) => {
                        return None;
                    }
                    _ if depth == 0 && is_kw(&t.tok, "FROM") => break,
                    _ => {}
                }
            }
            (skip_words(lx, &["ONLY"])?, true)
        }
        "INSERT" | "REPLACE" => (
            skip_words(
                lx,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
            )?,
            false,
        ),
        "UPDATE" => (skip_words(lx, &["LOW_PRIORITY", "IGNORE", "ONLY"])?, false),
        "DELETE" => {
            let t = skip_words(lx, &["LOW_PRIORITY", "QUICK", "IGNORE"])?;
            if !is_kw(&t.tok, "FROM") {
                // MySQL's multi-table `DELETE a, b FROM …`.
                return None;
            }
            (skip_words(lx, &["ONLY"])?, false)
        }
        "MERGE" => {
            if !is_kw(&lx.next()?.tok, "INTO") {
                return None;
            }
            (skip_words(lx, &["ONLY"])?, false)
        }
        "CREATE" => {
            let t = skip_words(
                lx,
                &[
                    "OR",
                    "REPLACE",
                    "GLOBAL",
                    "LOCAL",
                    "TEMP",
                    "TEMPORARY",
                    "UNLOGGED",
                    "UNIQUE",
                ],
            )?;
            if is_kw(&t.tok, "TABLE") {
                (skip_words(lx, &["IF", "NOT", "EXISTS"])?, false)
            } else if is_kw(&t.tok, "INDEX") {
                // CREATE INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON t
                loop {
                    let t = lx.next()?;
                    if is_kw(&t.tok, "ON") {
                        break;
                    }
                    if !matches!(t.tok, Tok::Word(_) | Tok::Ident(_)) {
                        return None;
                    }
                }
                (skip_words(lx, &["ONLY"])?, false)
            } else {
                return None;
            }
        }
        "DROP" | "ALTER" | "TRUNCATE" | "LOCK" => {
            let mut t = lx.next()?;
            if is_kw(&t.tok, "TABLE") {
                t = lx.next()?;
            } else if op == "DROP" || op == "ALTER" {
                return None;
            }
            while is_any_kw(&t.tok, &["IF", "EXISTS", "ONLY"]) {
                t = lx.next()?;
            }
            (t, false)
        }
        "COPY" => (lx.next()?, false),
        _ => return None,
    };
    table_name(t, lx, len, truncated, from_clause)
}

/// The next token after any of `words`.
fn skip_words<'a>(lx: &mut Lexer<'a>, words: &[&str]) -> Option<Token<'a>> {
    let mut t = lx.next()?;
    while is_any_kw(&t.tok, words) {
        t = lx.next()?;
    }
    Some(t)
}

/// A possibly qualified table name starting at `t`, unquoted and joined
/// with `.`; None if `t` does not start one, if it may be cut by the end
/// of a truncated input, if it is a function call (`from_clause`: `FROM
/// f(…)`), or if a comma list of tables follows (ambiguous).
fn table_name(
    t: Token<'_>,
    lx: &mut Lexer<'_>,
    len: usize,
    truncated: bool,
    from_clause: bool,
) -> Option<CompactString> {
    let mut name = Vec::new();
    let mut t = t;
    for part in 0..3 {
        match t.tok {
            Tok::Word(w) if !is_any_kw(&t.tok, &["LATERAL", "SELECT", "VALUES", "ROWS"]) => {
                push_clean(&mut name, w);
            }
            Tok::Ident(q) => unquote(&mut name, q),
            _ => return None,
        }
        if truncated && t.end >= len {
            return None;
        }
        let dot = lx.next();
        match dot {
            Some(d) if d.tok == Tok::Punct(b'.') && !d.space && part < 2 => {
                name.push(b'.');
                t = lx.next()?;
            }
            other => {
                if from_clause && other.is_some_and(|o| o.tok == Tok::Punct(b'(')) {
                    return None;
                }
                if other.is_some_and(|o| list_follows(o, lx)) {
                    return None;
                }
                break;
            }
        }
    }
    if name.is_empty() || name.len() > MAX_COLLECTION || name.ends_with(b".") {
        return None;
    }
    Some(into_text(name))
}

/// Whether a `,` at the table's depth comes before the table reference
/// ends (another table of a list: `FROM a, b`, `DROP TABLE a, b`).
fn list_follows(first: Token<'_>, lx: &mut Lexer<'_>) -> bool {
    let mut depth = 0i32;
    let mut t = first;
    loop {
        match t.tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Tok::Punct(b',') if depth == 0 => return true,
            Tok::Punct(b';') if depth == 0 => return false,
            _ if depth == 0 && is_any_kw(&t.tok, AFTER_TABLE) => return false,
            _ => {}
        }
        match lx.next() {
            Some(n) => t = n,
            None => return false,
        }
    }
}

/// Appends a quoted identifier's name: quotes removed, doubled quotes
/// made single (`"a""b"` → `a"b`).
fn unquote(out: &mut Vec<u8>, q: &[u8]) {
    let body = match q {
        [b'u' | b'U', b'&', rest @ ..] => rest,
        _ => q,
    };
    let Some((&quote, inner)) = body.split_first() else {
        return;
    };
    let inner = inner.strip_suffix(&[quote]).unwrap_or(inner);
    let mut buf = Vec::with_capacity(inner.len());
    let mut it = inner.iter().copied().peekable();
    while let Some(c) = it.next() {
        buf.push(c);
        if c == quote && it.peek() == Some(&quote) {
            it.next();
        }
    }
    push_clean(out, &buf);
}

// ------------------------------------------------------------ splitting

/// The statements of a multi-statement string (PostgreSQL's simple Query,
/// MySQL's multi-statements): each top-level `;`-separated part that has
/// a token, without the `;`. Quotes, comments and parentheses are
/// respected.
pub fn statements(sql: &[u8], dialect: Dialect) -> Statements<'_> {
    Statements {
        lx: Lexer::new(sql, dialect),
    }
}

/// Iterator of [`statements`].
#[derive(Debug, Clone)]
pub struct Statements<'a> {
    lx: Lexer<'a>,
}

impl<'a> Iterator for Statements<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let mut first = self.lx.next()?;
        while first.tok == Tok::Punct(b';') {
            first = self.lx.next()?;
        }
        // From the first token (leading comments and space dropped) to
        // the last one before the `;`.
        let mut end = first.end;
        let mut depth = 0u32;
        let mut t = first;
        loop {
            match t.tok {
                Tok::Punct(b'(') => depth = depth.saturating_add(1),
                Tok::Punct(b')') => depth = depth.saturating_sub(1),
                Tok::Punct(b';') if depth == 0 => break,
                _ => {}
            }
            end = t.end;
            match self.lx.next() {
                Some(n) => t = n,
                None => break,
            }
        }
        self.lx.sql.get(first.start..end)
    }
}

/// The summary of each statement of a multi-statement string (see
/// [`statements`]), lexing it once for splitting and sanitizing;
/// `truncated` marks the input cut by the capture (its last statement is
/// then truncated).
pub fn summaries(sql: &[u8], dialect: Dialect, truncated: bool, max_len: usize) -> Summaries<'_> {
    Summaries {
        lx: Lexer::new(sql, dialect),
        truncated,
        max_len,
        raw: false,
    }
}

/// Iterator of [`summaries`].
#[derive(Debug, Clone)]
pub struct Summaries<'a> {
    lx: Lexer<'a>,
    truncated: bool,
    max_len: usize,
    raw: bool,
}

impl Summaries<'_> {
    /// Keeps each statement's text as sent when `raw` (see [`raw_text`]).
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }
}

impl Iterator for Summaries<'_> {
    type Item = SqlSummary;
    fn next(&mut self) -> Option<SqlSummary> {
        let s = sanitize_next(&mut self.lx, self.max_len, true)?;
        let sql = self.lx.sql.get(s.start..s.end).unwrap_or_default();
        let truncated = self.truncated && s.last;
        let (operation, collection) = analyze(sql, self.lx.dialect, truncated);
        let (text, cut) = match self
            .raw
            .then(|| raw_text(sql, self.lx.dialect, self.max_len))
            .flatten()
        {
            Some(t) => t,
            None => (into_text(s.text), s.cut),
        };
        Some(SqlSummary {
            operation,
            collection,
            text,
            truncated: truncated || cut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> String {
        sanitize(s.as_bytes(), Dialect::Postgres, 4096)
            .0
            .to_string()
    }

    fn my(s: &str) -> String {
        sanitize(s.as_bytes(), Dialect::Mysql, 4096).0.to_string()
    }

    #[test]
    fn raw_text_only_on_request_and_never_for_passwords() {
        let q = b"SELECT * FROM t WHERE name = 'ann' AND id = 42";
        let s = summarize_as(q, Dialect::Postgres, false, 4096, true);
        assert_eq!(s.text, "SELECT * FROM t WHERE name = 'ann' AND id = 42");
        assert_eq!(s.collection.as_deref(), Some("t"));
        let s = summarize(q, Dialect::Postgres, false, 4096);
        assert_eq!(s.text, "SELECT * FROM t WHERE name = ? AND id = ?");
        for (q, d) in [
            (
                &b"ALTER ROLE app WITH PASSWORD 'hunter2'"[..],
                Dialect::Postgres,
            ),
            (b"CREATE USER x IDENTIFIED BY 'hunter2'", Dialect::Mysql),
            (b"SET password = 'hunter2'", Dialect::Mysql),
        ] {
            let s = summarize_as(q, d, false, 4096, true);
            assert!(!s.text.contains("hunter2"), "{}", s.text);
        }
        // Cut at the limit on a character boundary, marked.
        let s = summarize_as("SELECT 'ééé'".as_bytes(), Dialect::Mysql, false, 10, true);
        assert_eq!((s.text.as_str(), s.truncated), ("SELECT 'é", true));
        // Each statement of a multi-statement query on its own.
        let all: Vec<String> = summaries(
            b"SELECT 1; UPDATE t SET a = 'x'",
            Dialect::Postgres,
            false,
            100,
        )
        .raw(true)
        .map(|s| s.text.to_string())
        .collect();
        assert_eq!(all, ["SELECT 1", "UPDATE t SET a = 'x'"]);
    }

    #[test]
    fn an_identifier_left_open_hides_what_follows() {
        for out in [
            my("SELECT `x FROM t WHERE a = 'secret'"),
            pg("SELECT \"x FROM t WHERE a = 'secret'"),
            pg("SELECT U&\"x FROM t WHERE a = 'secret'"),
        ] {
            assert!(!out.contains("secret"), "{out}");
        }
        assert_eq!(my("SELECT `a` FROM `t`"), "SELECT `a` FROM `t`");
        assert_eq!(pg("SELECT \"a\" FROM t"), "SELECT \"a\" FROM t");
    }

    fn sum(s: &str) -> (String, Option<String>) {
        let x = summarize(s.as_bytes(), Dialect::Postgres, false, 4096);
        (x.operation.to_string(), x.collection.map(|c| c.to_string()))
    }

    fn op_coll(op: &str, coll: Option<&str>) -> (String, Option<String>) {
        (op.to_string(), coll.map(str::to_string))
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
        assert_eq!(my("SELECT \"pw\" FROM `t` # 1"), "SELECT ? FROM `t`");
        let s = summarize(b"  select 1", Dialect::Postgres, false, 4096);
        assert_eq!(
            (s.operation.as_str(), s.text.as_str()),
            ("SELECT", "select ?")
        );
    }

    #[test]
    fn every_literal_form_is_replaced() {
        assert_eq!(pg("SELECT U&'d\\0061t', U&\"col\""), "SELECT ?, U&\"col\"");
        assert_eq!(
            pg("SELECT B'1010', X'1F', b'1', x'ff'"),
            "SELECT ?, ?, ?, ?"
        );
        assert_eq!(
            pg("SELECT 0x1F, 0b101, 1_000, .5, 5., 1e-7, 2E+3"),
            "SELECT ?, ?, ?, ?, ?, ?, ?"
        );
        assert_eq!(pg("SELECT $tag$ a 'b' $x$ $tag$ || $$"), "SELECT ? || ?");
        assert_eq!(pg("SELECT e'\\\\', 'x'"), "SELECT ?, ?");
        assert_eq!(
            pg("SELECT 'a\\' , 'secret'"),
            "SELECT ? , ?",
            "standard strings: no escapes"
        );
        assert_eq!(
            pg("SELECT DATE '2020-01-01', '1'::int, -3"),
            "SELECT DATE ?, ?::int, -?"
        );
        assert_eq!(pg("SELECT true, FALSE, NULL"), "SELECT true, FALSE, NULL");
        assert_eq!(
            pg("SELECT a1, t_2.x9 FROM s1.t_2"),
            "SELECT a1, t_2.x9 FROM s1.t_2"
        );
        assert_eq!(
            my("SELECT 'a\\'b', \"c\\\"d\", _utf8mb4'x', N'y', X'0A', 0x0A, b'1'"),
            "SELECT ?, ?, ?, ?, ?, ?, ?"
        );
        assert_eq!(
            my("SELECT * FROM t WHERE a = ? AND b = 'x'"),
            "SELECT * FROM t WHERE a = ? AND b = ?"
        );
    }

    #[test]
    fn comments_go_and_never_leak() {
        assert_eq!(
            pg("/* c 'x' */ SELECT /* a /* nested 'y' */ still */ 1"),
            "SELECT ?"
        );
        assert_eq!(pg("SELECT 1 -- trailing secret"), "SELECT ?");
        assert_eq!(pg("SELECT a/**/FROM t"), "SELECT a FROM t");
        assert_eq!(my("SELECT 1 # note\n, 2 /*! 'x' */"), "SELECT ? , ?");
        assert_eq!(pg("SELECT 1 /* unterminated 'z'"), "SELECT ?");
    }

    #[test]
    fn whitespace_and_controls_are_normalised() {
        assert_eq!(
            pg("\n\tSELECT\r\n  a ,\tb\x01FROM t  ;  "),
            "SELECT a , b FROM t ;"
        );
        assert_eq!(
            pg("SELECT \"\u{e9}t\u{e9}\" FROM caf\u{e9}"),
            "SELECT \"\u{e9}t\u{e9}\" FROM caf\u{e9}"
        );
        let (t, _) = sanitize(b"SELECT \xff\xfe FROM t", Dialect::Postgres, 99);
        assert_eq!(t, "SELECT \u{fffd}\u{fffd} FROM t");
    }

    #[test]
    fn in_lists_collapse() {
        assert_eq!(
            pg("SELECT * FROM t WHERE id IN (1, 2, 3)"),
            "SELECT * FROM t WHERE id IN (?)"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE id in ('a','b')"),
            "SELECT * FROM t WHERE id in (?)"
        );
        assert_eq!(
            my("DELETE FROM t WHERE id IN (?, ?, ?) AND x"),
            "DELETE FROM t WHERE id IN (?) AND x"
        );
        assert_eq!(
            pg("SELECT 1 WHERE a IN ($1, $2)"),
            "SELECT ? WHERE a IN ($1, $2)"
        );
        assert_eq!(
            pg("SELECT 1 WHERE a IN (1, b, 2)"),
            "SELECT ? WHERE a IN (?, b, ?)"
        );
        assert_eq!(pg("SELECT 1 WHERE a IN (1, 2"), "SELECT ? WHERE a IN (?");
        assert_eq!(
            pg("SELECT 1 WHERE a IN (SELECT 2)"),
            "SELECT ? WHERE a IN (SELECT ?)"
        );
        assert_eq!(pg("SELECT 1 WHERE a IN (1)"), "SELECT ? WHERE a IN (?)");
    }

    #[test]
    fn max_len_cuts_on_token_boundaries() {
        let (t, cut) = sanitize(b"SELECT abc, 'x', defgh FROM t", Dialect::Postgres, 14);
        assert_eq!((t.as_str(), cut), ("SELECT abc, ?,", true));
        let (t, cut) = sanitize(b"SELECT 1", Dialect::Postgres, 8);
        assert_eq!((t.as_str(), cut), ("SELECT ?", false));
        let s = summarize("SELECT é".as_bytes(), Dialect::Postgres, false, 8);
        assert!(s.text.len() <= 8 && s.truncated);
        let s = summarize(b"SELECT x FROM t", Dialect::Postgres, true, 99);
        assert!(s.truncated);
    }

    #[test]
    fn operation_is_the_first_keyword() {
        assert_eq!(sum("-- c\n/* d */ ((select 1))"), op_coll("SELECT", None));
        for (q, op) in [
            ("begin", "BEGIN"),
            ("COMMIT", "COMMIT"),
            ("SET search_path = x", "SET"),
            ("EXPLAIN SELECT * FROM t", "EXPLAIN"),
            ("show server_version", "SHOW"),
            ("START TRANSACTION", "START"),
            ("'x'", ""),
            ("", ""),
            ("$1", ""),
        ] {
            assert_eq!(sum(q).0, op, "{q}");
        }
        assert_eq!(
            sum(
                "WITH a AS (SELECT 1 FROM x), b(c) AS MATERIALIZED (DELETE FROM y RETURNING 1) SELECT * FROM a"
            ),
            op_coll("SELECT", Some("a"))
        );
        assert_eq!(
            sum(
                "with recursive r as (select 1 union all select n+1 from r) insert into t select * from r"
            ),
            op_coll("INSERT", Some("t"))
        );
        assert_eq!(sum("WITH x AS (SELECT 1"), op_coll("WITH", None));
        let cut = summarize(b"SELEC", Dialect::Postgres, true, 99);
        assert_eq!(
            cut.operation, "",
            "a keyword cut by the capture is not guessed"
        );
    }

    #[test]
    fn collection_is_the_main_table() {
        for (q, op, coll) in [
            (
                "SELECT a, b FROM accounts WHERE id = 1",
                "SELECT",
                Some("accounts"),
            ),
            (
                "SELECT * FROM public.accounts a JOIN b ON a.x = b.x",
                "SELECT",
                Some("public.accounts"),
            ),
            (
                "SELECT * FROM \"My \"\"T\"\"\".\"Acc\"",
                "SELECT",
                Some("My \"T\".Acc"),
            ),
            (
                "SELECT extract(year FROM ts), (SELECT 1 FROM z) FROM t1",
                "SELECT",
                Some("t1"),
            ),
            ("SELECT * FROM ONLY t", "SELECT", Some("t")),
            ("SELECT * FROM (SELECT * FROM t) s", "SELECT", None),
            ("SELECT * FROM a, b", "SELECT", None),
            ("SELECT * FROM a AS x, b", "SELECT", None),
            ("SELECT * FROM generate_series(1, 3)", "SELECT", None),
            ("SELECT 1", "SELECT", None),
            ("SELECT 1 UNION SELECT x FROM t", "SELECT", None),
            (
                "SELECT * FROM t1 UNION SELECT * FROM t2",
                "SELECT",
                Some("t1"),
            ),
            (
                "(SELECT a FROM t) UNION (SELECT a FROM u)",
                "SELECT",
                Some("t"),
            ),
            ("SELECT * FROM LATERAL f()", "SELECT", None),
            ("INSERT INTO t (a, b) VALUES (1, 2)", "INSERT", Some("t")),
            ("insert into s.t values (1)", "INSERT", Some("s.t")),
            ("INSERT INTO t(a) SELECT a FROM u", "INSERT", Some("t")),
            (
                "UPDATE accounts SET a = 1, b = 2 WHERE id = 3",
                "UPDATE",
                Some("accounts"),
            ),
            ("UPDATE ONLY t SET a = 1", "UPDATE", Some("t")),
            ("DELETE FROM t WHERE a = 1", "DELETE", Some("t")),
            ("DELETE FROM ONLY t USING a, b", "DELETE", Some("t")),
            ("CREATE TABLE t (a int, b text)", "CREATE", Some("t")),
            (
                "CREATE TEMP TABLE IF NOT EXISTS s.t (a int)",
                "CREATE",
                Some("s.t"),
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)",
                "CREATE",
                Some("t"),
            ),
            ("CREATE VIEW v AS SELECT 1", "CREATE", None),
            ("DROP TABLE IF EXISTS t CASCADE", "DROP", Some("t")),
            ("DROP TABLE a, b", "DROP", None),
            ("DROP INDEX i", "DROP", None),
            ("ALTER TABLE ONLY t ADD COLUMN c int", "ALTER", Some("t")),
            ("TRUNCATE t", "TRUNCATE", Some("t")),
            (
                "TRUNCATE TABLE pgbench_history",
                "TRUNCATE",
                Some("pgbench_history"),
            ),
            ("TRUNCATE a, b", "TRUNCATE", None),
            ("COPY t (a, b) FROM STDIN", "COPY", Some("t")),
            ("COPY (SELECT 1) TO STDOUT", "COPY", None),
            (
                "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
                "MERGE",
                Some("t"),
            ),
            ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK", Some("t")),
            ("EXPLAIN SELECT * FROM t", "EXPLAIN", None),
            ("SELECT * FROM", "SELECT", None),
            ("SELECT * FROM t;", "SELECT", Some("t")),
        ] {
            assert_eq!(sum(q), op_coll(op, coll), "{q}");
        }
        let my = summarize(
            b"INSERT IGNORE INTO `db`.`t` VALUES (?)",
            Dialect::Mysql,
            false,
            99,
        );
        assert_eq!(my.collection.as_deref(), Some("db.t"));
        let my = summarize(b"DELETE t1, t2 FROM t1 JOIN t2", Dialect::Mysql, false, 99);
        assert_eq!(my.collection, None);
        let cut = summarize(b"SELECT * FROM acco", Dialect::Postgres, true, 99);
        assert_eq!(
            cut.collection, None,
            "a name cut by the capture is not guessed"
        );
        let cut = summarize(
            b"SELECT * FROM accounts WHERE a = 'x",
            Dialect::Postgres,
            true,
            99,
        );
        assert_eq!(cut.collection.as_deref(), Some("accounts"));
    }

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let all = |s: &str| -> Vec<String> {
            statements(s.as_bytes(), Dialect::Postgres)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        };
        assert_eq!(all("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(
            all(" SELECT ';' ; ;; -- x\n /* y */ SELECT $$;$$;"),
            ["SELECT ';'", "SELECT $$;$$"]
        );
        assert_eq!(
            all("CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2)"),
            ["CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2)"]
        );
        assert_eq!(all(""), Vec::<String>::new());
        assert_eq!(all(" ; -- only a comment"), Vec::<String>::new());
        assert_eq!(
            all("SELECT 'unterminated; SELECT 2"),
            ["SELECT 'unterminated; SELECT 2"]
        );
        let my: Vec<_> = statements(b"SELECT 1 # c;\n; SELECT 2", Dialect::Mysql).collect();
        assert_eq!(my, [&b"SELECT 1"[..], b"SELECT 2"]);
    }

    #[test]
    fn a_secret_in_any_literal_never_shows() {
        let pg_forms = [
            "'xSECRETx'",
            "E'\\'SECRET'",
            "U&'SECRET'",
            "$$SECRET$$",
            "$t$SECRET$t$",
            "B'SECRET'",
            "X'SECRET'",
            "N'SECRET'",
            "'SECRET",
            "$a$ SECRET",
            "'it''s SECRET'",
        ];
        for f in pg_forms {
            for tpl in [
                "SELECT {}",
                "SELECT * FROM t WHERE a IN (1, {}, 3)",
                "INSERT INTO t VALUES ({})",
            ] {
                let q = tpl.replace("{}", f);
                let s = summarize(q.as_bytes(), Dialect::Postgres, false, 4096);
                assert!(!s.text.contains("SECRET"), "{q} -> {}", s.text);
                assert!(s.collection.is_none_or(|c| !c.contains("SECRET")));
            }
        }
        for f in [
            "'SECRET'",
            "\"SECRET\"",
            "'a\\'SECRET'",
            "_latin1'SECRET'",
            "x'SECRET'",
            "\"a\\\"SECRET\"",
        ] {
            let q = format!("SELECT * FROM t WHERE a = {f}");
            let s = summarize(q.as_bytes(), Dialect::Mysql, false, 4096);
            assert!(!s.text.contains("SECRET"), "{q} -> {}", s.text);
        }
        let s = summarize(
            b"SELECT 31337, 3.14, 1e10, 0xBEEF",
            Dialect::Mysql,
            false,
            99,
        );
        assert!(!s.text.contains("31337") && !s.text.contains("BEEF") && !s.text.contains("14"));
    }

    #[test]
    fn summaries_split_and_summarize_in_one_pass() {
        let all: Vec<_> = summaries(
            b" ; select a from t; ;insert into u values ('x') ; ",
            Dialect::Postgres,
            false,
            99,
        )
        .map(|s| {
            (
                s.operation.to_string(),
                s.collection.map(|c| c.to_string()),
                s.text.to_string(),
                s.truncated,
            )
        })
        .collect();
        assert_eq!(
            all,
            [
                (
                    "SELECT".into(),
                    Some("t".into()),
                    "select a from t".into(),
                    false
                ),
                (
                    "INSERT".into(),
                    Some("u".into()),
                    "insert into u values (?)".into(),
                    false
                ),
            ]
        );
        let cut: Vec<_> =
            summaries(b"SELECT 1; SELECT * FROM acc", Dialect::Postgres, true, 99).collect();
        assert_eq!(cut.len(), 2);
        assert!(!cut[0].truncated && cut[1].truncated && cut[1].collection.is_none());
        let capped: Vec<_> =
            summaries(b"SELECT aaaa, bbbb; SELECT 2", Dialect::Postgres, false, 10).collect();
        assert_eq!(
            capped.len(),
            2,
            "a statement past the cap still ends at its ;"
        );
        assert_eq!(
            (capped[0].text.as_str(), capped[0].truncated),
            ("SELECT", true)
        );
        assert_eq!(capped[1].text, "SELECT ?");
        for q in [
            "SELECT 1; SELECT 'a;b'; (SELECT 2)",
            "",
            "  ;; ",
            "a (;) b; c",
        ] {
            let via_statements: Vec<_> = statements(q.as_bytes(), Dialect::Postgres)
                .map(|s| summarize(s, Dialect::Postgres, false, 99))
                .collect();
            let fused: Vec<_> = summaries(q.as_bytes(), Dialect::Postgres, false, 99).collect();
            assert_eq!(via_statements, fused, "{q}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_show_digits_of_literals() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut v = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = b"SELECT'\"$`#-/*;()., 1eE\\xU&N_?\n\x80";
                v.push(pick[(seed % pick.len() as u64) as usize]);
            }
            for d in [Dialect::Postgres, Dialect::Mysql] {
                let s = summarize(&v, d, seed.is_multiple_of(2), 40);
                assert!(s.text.len() <= 40);
                let split: Vec<_> = statements(&v, d)
                    .map(|s| summarize(s, d, false, 40))
                    .collect();
                let fused: Vec<_> = summaries(&v, d, false, 40).collect();
                assert_eq!(split, fused, "{:?}", String::from_utf8_lossy(&v));
            }
        }
    }
}
