//! Go's function table (`.gopclntab`), which every Go binary keeps even
//! when stripped of `.symtab` and DWARF: the runtime needs it for stack
//! traces and garbage collection. Only the parts that map a function name
//! to its entry address and end are read.
//!
//! Layout (Go 1.18 and later, `runtime/symtab.go` `pcHeader`): a header
//! of magic u32, two zero bytes, the instruction quantum, the pointer
//! size, then eight pointer-sized words: nfunc, nfiles, textStart and the
//! offsets (from the table's start) of funcnametab, cutab, filetab, pctab
//! and the function table. The function table holds nfunc+1 pairs of u32
//! (entry offset from textStart, offset of the `_func` record from the
//! function table's start); the last entry offset is the end of the text.
//! A `_func` record starts with its entry offset (u32) and its name offset
//! (i32, into funcnametab); names are NUL-terminated.
//!
//! Pure and bounded: every read is checked against the bytes given, so
//! truncated or hostile input yields an error, never a panic.

/// Go 1.18–1.19.
pub const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.20 and later.
pub const MAGIC_GO120: u32 = 0xffff_fff1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    #[error("too short for a pclntab header")]
    Truncated,
    #[error("magic {0:#010x}: a Go older than 1.18 (or not a pclntab)")]
    OldOrUnknownMagic(u32),
    #[error("pointer size {0} (only 64-bit binaries are supported)")]
    PointerSize(u8),
    #[error("{0} lies outside the table")]
    OutOfBounds(&'static str),
}

/// A parsed header over the table's bytes (nothing is copied).
#[derive(Debug, Clone, Copy)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    nfunc: usize,
    /// Address the function table's entry offsets are relative to (0 when
    /// the linker left it to a relocation: position-independent builds).
    pub text_start: u64,
    funcnames: usize,
    functab: usize,
    pub magic: u32,
}

/// A function found in the table: its address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Func {
    /// Entry address (with `text_start` added).
    pub entry: u64,
    /// First address past the function (the next function's entry, so it
    /// may include alignment padding).
    pub end: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

impl<'a> Pclntab<'a> {
    /// Reads the header of a little-endian 64-bit table.
    pub fn parse(data: &'a [u8]) -> Result<Self, PclntabError> {
        let magic = u32_at(data, 0).ok_or(PclntabError::Truncated)?;
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return Err(PclntabError::OldOrUnknownMagic(magic));
        }
        let ptr = *data.get(7).ok_or(PclntabError::Truncated)?;
        if ptr != 8 {
            return Err(PclntabError::PointerSize(ptr));
        }
        let word = |i: usize| u64_at(data, 8 + 8 * i).ok_or(PclntabError::Truncated);
        let offset = |i: usize, what: &'static str| -> Result<usize, PclntabError> {
            let v = word(i)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v < data.len())
                .ok_or(PclntabError::OutOfBounds(what))
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| PclntabError::OutOfBounds("nfunc"))?;
        let text_start = word(2)?;
        let funcnames = offset(3, "funcnametab")?;
        let functab = offset(7, "functab")?;
        // The function table must hold nfunc+1 entry offsets.
        let need = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .and_then(|n| n.checked_add(functab));
        if need.is_none_or(|n| n > data.len()) {
            return Err(PclntabError::OutOfBounds("functab"));
        }
        Ok(Pclntab {
            data,
            nfunc,
            text_start,
            funcnames,
            functab,
            magic,
        })
    }

    /// Number of functions in the table.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// Name of function `i` (None when its record is out of bounds).
    pub fn name(&self, i: usize) -> Option<&'a [u8]> {
        let start = self.name_start(i)?;
        let rest = self.data.get(start..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        rest.get(..len)
    }

    /// Offset in the table where function `i`'s name starts.
    fn name_start(&self, i: usize) -> Option<usize> {
        let funcoff = u32_at(
            self.data,
            self.functab
                .checked_add(i.checked_mul(8)?)?
                .checked_add(4)?,
        )?;
        let rec = self.functab.checked_add(funcoff as usize)?;
        let nameoff = i32::from_le_bytes(
            self.data
                .get(rec.checked_add(4)?..rec.checked_add(8)?)?
                .try_into()
                .ok()?,
        );
        self.funcnames.checked_add(usize::try_from(nameoff).ok()?)
    }

    /// Address range of function `i`, with `text_start` as given (pass
    /// the `.text` address when the header's is 0).
    pub fn range(&self, i: usize, text_start: u64) -> Option<Func> {
        let at = self.functab.checked_add(i.checked_mul(8)?)?;
        let entry = u32_at(self.data, at)?;
        let next = u32_at(self.data, at.checked_add(8)?)?;
        if next <= entry {
            return None;
        }
        // The text address comes from the file too: a bogus one must not
        // wrap.
        Some(Func {
            entry: text_start.checked_add(u64::from(entry))?,
            end: text_start.checked_add(u64::from(next))?,
        })
    }

    /// The function named `name` (a linear scan: done once per binary).
    pub fn find(&self, name: &str, text_start: u64) -> Option<Func> {
        (0..self.nfunc)
            .find(|&i| self.name_is(i, name.as_bytes()))
            .and_then(|i| self.range(i, text_start))
    }

    /// Whether function `i` is named `name`: compares `name.len() + 1`
    /// bytes, so a crafted table without NULs cannot make every lookup
    /// scan to its end.
    fn name_is(&self, i: usize, name: &[u8]) -> bool {
        self.name_start(i)
            .and_then(|start| self.data.get(start..start.checked_add(name.len() + 1)?))
            .is_some_and(|b| b.get(..name.len()) == Some(name) && b.last() == Some(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with two functions, `a.f` at text+0x10 and `b.g` at
    /// text+0x40, text ending at text+0x80.
    fn table() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&MAGIC_GO120.to_le_bytes()); // magic
        t.extend_from_slice(&[0, 0, 1, 8]); // pad, pad, quantum, ptrsize
        let header_end = 8 + 8 * 8;
        let funcnames = header_end;
        let names = b"a.f\0b.g\0";
        let functab = funcnames + names.len();
        for w in [
            2u64,             // nfunc
            0,                // nfiles
            0x401000,         // textStart
            funcnames as u64, // funcnametab
            0,                // cutab
            0,                // filetab
            0,                // pctab
            functab as u64,   // functab
        ] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t.extend_from_slice(names);
        // functab: (entryoff, funcoff) x2, then the end offset.
        let recs = 2 * 8 + 4;
        for (entry, rec) in [(0x10u32, recs as u32), (0x40, recs as u32 + 8)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&rec.to_le_bytes());
        }
        t.extend_from_slice(&0x80u32.to_le_bytes());
        // _func records: entryoff, nameoff.
        for (entry, name) in [(0x10u32, 0i32), (0x40, 4)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&name.to_le_bytes());
        }
        t
    }

    #[test]
    fn a_text_address_near_the_top_does_not_wrap() {
        let t = table();
        let p = Pclntab::parse(&t).unwrap();
        assert!(p.range(0, u64::MAX - 0x20).is_none());
        assert!(p.find("a.f", u64::MAX).is_none());
    }

    #[test]
    fn finds_functions_by_name() {
        let t = table();
        let p = Pclntab::parse(&t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.text_start, 0x401000);
        assert_eq!(p.name(0), Some(&b"a.f"[..]));
        assert_eq!(
            p.find("b.g", p.text_start),
            Some(Func {
                entry: 0x401040,
                end: 0x401080
            })
        );
        assert_eq!(p.find("c.h", p.text_start), None);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_miss_never_a_panic() {
        let t = table();
        for n in 0..t.len() {
            if let Ok(p) = Pclntab::parse(&t[..n]) {
                let _ = p.find("b.g", 0);
            }
        }
        assert_eq!(
            Pclntab::parse(&[0xfa, 0xff, 0xff, 0xff, 0, 0, 1, 8]).unwrap_err(),
            PclntabError::OldOrUnknownMagic(0xffff_fffa)
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over header fields.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = table();
        for _ in 0..20_000 {
            let mut t = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % t.len();
                t[at] = (x >> 32) as u8;
            }
            if let Ok(p) = Pclntab::parse(&t) {
                for i in 0..p.len().min(8) {
                    let _ = p.name(i);
                    let _ = p.range(i, p.text_start);
                }
                let _ = p.find("b.g", 0);
            }
        }
    }
}
