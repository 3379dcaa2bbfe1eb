//! This process's memory mappings (`/proc/self/maps`), so that every read of
//! library memory is checked to stay inside a readable mapping.

/// One mapping: `[start, end)` and its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    pub writable: bool,
}

/// Parses the text of `/proc/<pid>/maps`; lines that do not parse are skipped
/// (the kernel's format is fixed, so that only happens to garbage input).
pub(crate) fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    Some(Mapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        readable: perms.first() == Some(&b'r'),
        writable: perms.get(1) == Some(&b'w'),
    })
}

/// The mapping that contains `addr`, if any.
pub(crate) fn containing(maps: &[Mapping], addr: usize) -> Option<Mapping> {
    maps.iter()
        .copied()
        .find(|m| m.start <= addr && addr < m.end)
}

/// Reads the current mappings of this process.
pub(crate) fn current() -> std::io::Result<Vec<Mapping>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/maps")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lines_and_finds_the_mapping() {
        let text = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
7f1e2c000000-7f1e2c0a0000 r--p 00000000 08:01 1234                       /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1e2c0a0000-7f1e2c0b0000 ---p 00000000 00:00 0
garbage line
";
        let maps = parse(text);
        assert_eq!(maps.len(), 3);
        let heap = containing(&maps, 0x55d0c0a00010).unwrap();
        assert!(heap.readable && heap.writable);
        let ro = containing(&maps, 0x7f1e2c09ffff).unwrap();
        assert!(ro.readable && !ro.writable);
        assert!(!containing(&maps, 0x7f1e2c0a0000).unwrap().readable);
        assert_eq!(containing(&maps, 0x10), None);
    }
}
