//! A reader for portable PDBs, just enough to turn (method token, IL offset) into a source
//! file and line. Format: ECMA-335 metadata with the tables of the Portable PDB v1.0 spec
//! (dotnet/runtime `docs/design/specs/PortablePdb-Metadata.md`): `Document` (0x30) and
//! `MethodDebugInformation` (0x31), whose sequence-point blobs map IL offsets to lines.
//!
//! Everything is bounds-checked: a truncated or foreign file yields `None`, never a panic.

use std::ops::Range;

const METADATA_SIGNATURE: u32 = 0x424A_5342; // "BSJB"
const TABLE_DOCUMENT: u32 = 0x30;
const TABLE_METHOD_DEBUG_INFORMATION: u32 = 0x31;

pub struct PortablePdb {
    data: Vec<u8>,
    blobs: Range<usize>,
    blob_index_size: usize,
    documents: Table,
    methods: Table,
    document_index_size: usize,
}

#[derive(Clone, Copy, Default)]
struct Table {
    offset: usize,
    rows: u32,
    row_size: usize,
}

/// A non-hidden sequence point: IL offset → start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequencePoint {
    pub il_offset: u32,
    pub line: u32,
    pub document: u32,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, at: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn index(&mut self, size: usize) -> Option<u32> {
        if size == 2 { self.u16().map(u32::from) } else { self.u32() }
    }
    fn at_end(&self) -> bool {
        self.at >= self.data.len()
    }
    /// ECMA-335 II.23.2 compressed unsigned integer.
    fn compressed(&mut self) -> Option<(u32, usize)> {
        let b0 = self.u8()? as u32;
        if b0 & 0x80 == 0 {
            Some((b0, 1))
        } else if b0 & 0xC0 == 0x80 {
            Some(((b0 & 0x3F) << 8 | self.u8()? as u32, 2))
        } else if b0 & 0xE0 == 0xC0 {
            let rest = self.take(3)?;
            Some(((b0 & 0x1F) << 24 | (rest[0] as u32) << 16 | (rest[1] as u32) << 8 | rest[2] as u32, 4))
        } else {
            None
        }
    }
    fn unsigned(&mut self) -> Option<u32> {
        self.compressed().map(|(v, _)| v)
    }
    /// Compressed signed integer: the sign is rotated into the lowest bit.
    fn signed(&mut self) -> Option<i32> {
        let (raw, len) = self.compressed()?;
        let mut value = (raw >> 1) as i32;
        if raw & 1 != 0 {
            value |= match len {
                1 => 0xFFFF_FFC0_u32 as i32,
                2 => 0xFFFF_E000_u32 as i32,
                _ => 0xF000_0000_u32 as i32,
            };
        }
        Some(value)
    }
}

impl PortablePdb {
    pub fn parse(data: Vec<u8>) -> Option<PortablePdb> {
        let mut c = Cursor::new(&data);
        if c.u32()? != METADATA_SIGNATURE {
            return None;
        }
        c.take(8)?; // major, minor, reserved
        let version_len = c.u32()? as usize;
        c.take(version_len)?;
        c.u16()?; // flags
        let stream_count = c.u16()?;
        let mut tables = None;
        let mut blobs = None;
        for _ in 0..stream_count {
            let offset = c.u32()? as usize;
            let size = c.u32()? as usize;
            let name_start = c.at;
            let name_len = data.get(name_start..)?.iter().position(|&b| b == 0)?;
            let name = &data[name_start..name_start + name_len];
            c.at = name_start + (name_len + 4) / 4 * 4;
            let range = offset..offset.checked_add(size)?;
            data.get(range.clone())?;
            match name {
                b"#~" | b"#-" => tables = Some(range),
                b"#Blob" => blobs = Some(range),
                _ => {}
            }
        }
        let (tables, blobs) = (tables?, blobs?);
        let mut t = Cursor::new(&data[tables.clone()]);
        t.take(6)?; // reserved, major, minor
        let heap_sizes = t.u8()?;
        t.u8()?;
        let valid = t.u64()?;
        t.u64()?; // sorted
        // A standalone PDB holds only debug tables; anything below 0x30 means we cannot
        // compute where the tables we need start.
        if valid & ((1u64 << TABLE_DOCUMENT) - 1) != 0 {
            return None;
        }
        let mut rows = [0u32; 64];
        for (bit, row) in rows.iter_mut().enumerate() {
            if valid & (1 << bit) != 0 {
                *row = t.u32()?;
            }
        }
        let blob_index_size = if heap_sizes & 0x4 != 0 { 4 } else { 2 };
        let guid_index_size = if heap_sizes & 0x2 != 0 { 4 } else { 2 };
        let document_rows = rows[TABLE_DOCUMENT as usize];
        let document_index_size = if document_rows < 1 << 16 { 2 } else { 4 };
        let documents = Table {
            offset: tables.start + t.at,
            rows: document_rows,
            row_size: 2 * blob_index_size + 2 * guid_index_size,
        };
        let methods = Table {
            offset: documents.offset + documents.rows as usize * documents.row_size,
            rows: rows[TABLE_METHOD_DEBUG_INFORMATION as usize],
            row_size: document_index_size + blob_index_size,
        };
        data.get(methods.offset..methods.offset + methods.rows as usize * methods.row_size)?;
        Some(PortablePdb { data, blobs, blob_index_size, documents, methods, document_index_size })
    }

    fn blob(&self, index: u32) -> Option<&[u8]> {
        let heap = self.data.get(self.blobs.clone())?;
        let mut c = Cursor::new(heap.get(index as usize..)?);
        let len = c.unsigned()? as usize;
        c.take(len)
    }

    fn row(&self, table: Table, rid: u32) -> Option<Cursor<'_>> {
        if rid == 0 || rid > table.rows {
            return None;
        }
        let start = table.offset + (rid as usize - 1) * table.row_size;
        Some(Cursor::new(self.data.get(start..start + table.row_size)?))
    }

    /// A document's file name (the last path component).
    pub fn document_file_name(&self, document: u32) -> Option<String> {
        let mut row = self.row(self.documents, document)?;
        let name = self.blob(row.index(self.blob_index_size)?)?;
        let mut c = Cursor::new(name);
        let separator = c.u8()?;
        let mut parts = Vec::new();
        while !c.at_end() {
            let part = c.unsigned()?;
            parts.push(if part == 0 { String::new() } else { String::from_utf8_lossy(self.blob(part)?).into_owned() });
        }
        let full = if separator == 0 { parts.concat() } else { parts.join(&(separator as char).to_string()) };
        let file = full.rsplit(['/', '\\']).next().unwrap_or(&full);
        Some(file.to_string())
    }

    /// The non-hidden sequence points of a method (by MethodDef token), in IL order.
    pub fn sequence_points(&self, method_token: u32) -> Option<Vec<SequencePoint>> {
        let mut row = self.row(self.methods, method_token & 0x00FF_FFFF)?;
        let mut document = row.index(self.document_index_size)?;
        let blob = self.blob(row.index(self.blob_index_size)?)?;
        let mut c = Cursor::new(blob);
        c.unsigned()?; // LocalSignature
        if document == 0 {
            document = c.unsigned()?;
        }
        let mut points = Vec::new();
        let (mut il, mut line) = (0u32, 0i64);
        let mut first = true;
        let mut seen_visible = false;
        while !c.at_end() {
            let delta_il = c.unsigned()?;
            if delta_il == 0 && !first {
                document = c.unsigned()?; // document-record
                continue;
            }
            il = if first { delta_il } else { il.checked_add(delta_il)? };
            first = false;
            let delta_lines = c.unsigned()?;
            let delta_columns = if delta_lines == 0 { c.unsigned()? as i64 } else { c.signed()? as i64 };
            if delta_lines == 0 && delta_columns == 0 {
                continue; // hidden sequence point
            }
            // Start line and column: absolute for the first visible point, deltas after.
            if seen_visible {
                line += c.signed()? as i64;
                c.signed()?;
            } else {
                line = c.unsigned()? as i64;
                c.unsigned()?;
                seen_visible = true;
            }
            if line > 0 {
                points.push(SequencePoint { il_offset: il, line: line as u32, document });
            }
        }
        Some(points)
    }

    /// `File.cs:line` of the statement containing `il_offset` in a method.
    pub fn location(&self, method_token: u32, il_offset: u32) -> Option<String> {
        let points = self.sequence_points(method_token)?;
        let point = points.iter().rev().find(|p| p.il_offset <= il_offset).or(points.first())?;
        Some(format!("{}:{}", self.document_file_name(point.document)?, point.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_integers_decode_per_ecma_335() {
        let mut c = Cursor::new(&[0x03, 0x80, 0x80, 0xC0, 0x00, 0x40, 0x00]);
        assert_eq!(c.unsigned(), Some(3));
        assert_eq!(c.unsigned(), Some(0x80));
        assert_eq!(c.unsigned(), Some(0x4000));
        // Signed examples from ECMA-335 II.23.2: 3 → 0x06, -3 → 0x7B, 64 → 0x8080, -64 → 0x01.
        let mut c = Cursor::new(&[0x06, 0x7B, 0x80, 0x80, 0x01]);
        assert_eq!(c.signed(), Some(3));
        assert_eq!(c.signed(), Some(-3));
        assert_eq!(c.signed(), Some(64));
        assert_eq!(c.signed(), Some(-64));
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert!(PortablePdb::parse(Vec::new()).is_none());
        assert!(PortablePdb::parse(b"BSJB\x01\x00".to_vec()).is_none());
        let mut bytes = METADATA_SIGNATURE.to_le_bytes().to_vec();
        bytes.extend([0xFF; 64]);
        assert!(PortablePdb::parse(bytes).is_none());
    }
}
