//! Struct field offsets from a Go binary's DWARF (`.debug_info`, present
//! unless built with `-ldflags=-w` or stripped).

use std::borrow::Cow;

use gimli::{EndianSlice, LittleEndian, SectionId};
use object::{Object, ObjectSection};

/// Compressed DWARF sections larger than this once inflated are refused.
const MAX_SECTION: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DwarfError {
    #[error("reading DWARF section {0} failed")]
    Section(&'static str, #[source] object::Error),
    #[error("DWARF section {0} inflates to {1} bytes (limit {MAX_SECTION})")]
    TooLarge(&'static str, u64),
    #[error("malformed DWARF")]
    Parse(#[source] gimli::Error),
}

/// Which fields to look up: (struct type name, member name).
pub type Field<'a> = (&'a str, &'a str);

/// The byte offset of each requested field, in request order (None where
/// the struct or member was not found). `Ok(None)` when the file carries
/// no `.debug_info` at all.
pub fn field_offsets(
    file: &object::File<'_>,
    fields: &[Field<'_>],
) -> Result<Option<Vec<Option<u64>>>, DwarfError> {
    if file.section_by_name(".debug_info").is_none() {
        return Ok(None);
    }
    let load = |id: SectionId| -> Result<Cow<'_, [u8]>, DwarfError> {
        let name = id.name();
        let Some(s) = file.section_by_name(name) else {
            return Ok(Cow::Borrowed(&[][..]));
        };
        let c = s
            .compressed_data()
            .map_err(|e| DwarfError::Section(name, e))?;
        if c.uncompressed_size > MAX_SECTION {
            return Err(DwarfError::TooLarge(name, c.uncompressed_size));
        }
        c.decompress().map_err(|e| DwarfError::Section(name, e))
    };
    let sections = gimli::DwarfSections::load(load)?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    let mut out = vec![None; fields.len()];
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(DwarfError::Parse)? {
        let unit = dwarf.unit(header).map_err(DwarfError::Parse)?;
        let mut cursor = unit.entries();
        // The struct being walked: its name and depth.
        let mut current: Option<(Vec<u8>, isize)> = None;
        while let Some(entry) = cursor.next_dfs().map_err(DwarfError::Parse)? {
            let depth = entry.depth();
            if current.as_ref().is_some_and(|(_, d)| depth <= *d) {
                current = None;
            }
            let name = || {
                entry
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| dwarf.attr_string(&unit, v).ok())
                    .map(|s| s.slice())
            };
            match entry.tag() {
                gimli::DW_TAG_structure_type => {
                    if let Some(n) = name()
                        && fields.iter().any(|(s, _)| s.as_bytes() == n)
                    {
                        current = Some((n.to_vec(), depth));
                    }
                }
                gimli::DW_TAG_member => {
                    let Some((ref sname, sdepth)) = current else {
                        continue;
                    };
                    if depth != sdepth + 1 {
                        continue;
                    }
                    let Some(mname) = name() else { continue };
                    let off = entry
                        .attr_value(gimli::DW_AT_data_member_location)
                        .and_then(|v| v.udata_value());
                    for (i, (s, m)) in fields.iter().enumerate() {
                        if s.as_bytes() == sname.as_slice()
                            && m.as_bytes() == mname
                            && let Some(slot) = out.get_mut(i)
                        {
                            *slot = slot.or(off);
                        }
                    }
                }
                _ => {}
            }
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(Some(out))
}
