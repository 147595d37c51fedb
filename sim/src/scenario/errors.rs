//! Error positions: a serde_json error turned into the JSON path of the field and the line
//! and column (in characters) where that value starts.

use super::*;

/// A serde_json error as (path, line and column, message). The path is where deserializing
/// stopped, plus the field an error inside a timeline item names (`ITEM_FIELD`) or a missing or
/// unknown field's name. The position is where the value at that path starts (a missing field:
/// its object), so an error inside a timeline item points at that item and not at the end of
/// it; a syntax error or a repeated key is where serde_json stopped.
pub(super) fn json_error(
    text: &str,
    mut path: Vec<PathSeg>,
    e: serde_json::Error,
) -> (Vec<PathSeg>, (usize, usize), String) {
    let full = e.to_string();
    // serde_json appends " at line L column C"; we print the position ourselves.
    let mut message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    if let Some((field, rest)) = message
        .strip_prefix(ITEM_FIELD)
        .and_then(|m| m.split_once("`: "))
    {
        path.extend(parse_item_path(field));
        message = rest.to_string();
    }
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p)?.split('`').next());
    if let Some(name) = named {
        if path.last().is_none_or(|last| last.name() != Some(name)) {
            path.push(PathSeg::Field(name.to_string()));
        }
    }
    let stopped = json_offset(text, e.line(), e.column());
    let pos = if message.starts_with("duplicate field") {
        // serde_json stopped on the repeated key's closing quote: point at the key.
        let key = format!("\"{}\"", named.unwrap_or_default());
        let through = text[stopped..]
            .chars()
            .next()
            .map_or(stopped, |c| stopped + c.len_utf8());
        line_col(text, text[..through].rfind(&key).unwrap_or(stopped))
    } else if e.classify() == serde_json::error::Category::Data {
        locate_nearest(text, &path)
    } else {
        line_col(text, stopped)
    };
    (path, pos, message)
}

/// A field path inside a timeline item (`for_ms`, `down_ms[1]`) as segments.
pub(super) fn parse_item_path(field: &str) -> Vec<PathSeg> {
    let mut path = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            path.push(PathSeg::Field(key.to_string()));
        }
        for idx in pieces {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => path.push(PathSeg::Idx(i)),
                Err(_) => path.push(PathSeg::Field(idx.to_string())),
            }
        }
    }
    path
}

/// serde_path_to_error's path as ours; it stops at a segment it could not name.
pub(super) fn path_of(p: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    p.iter()
        .map_while(|seg| match seg {
            Segment::Seq { index } => Some(PathSeg::Idx(*index)),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                Some(PathSeg::Field(key.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A JSON path into a scenario. `Key` is a field named in code, `Field` one read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(&'static str),
    Field(String),
    Idx(usize),
}

impl PathSeg {
    fn name(&self) -> Option<&str> {
        match self {
            PathSeg::Key(k) => Some(k),
            PathSeg::Field(k) => Some(k),
            PathSeg::Idx(_) => None,
        }
    }
}

pub(super) fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Idx(i) => s.push_str(&format!("[{i}]")),
            _ => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(seg.name().unwrap_or_default());
            }
        }
    }
    s
}

/// Where the value at `path` starts, or the nearest enclosing value that is there (a missing
/// field points at its object); the start of the text at worst.
pub(super) fn locate_nearest(text: &str, path: &[PathSeg]) -> (usize, usize) {
    (0..=path.len())
        .rev()
        .find_map(|n| locate(text, &path[..n]))
        .unwrap_or((1, 1))
}

/// Finds the (line, column) where the value at `path` starts in a JSON text. A tiny scanner:
/// enough for error messages, not a parser. The text may be malformed further on (serde stops
/// at the first error), so it reads bytes only and gives up (`None`) rather than guess.
pub(super) fn locate(text: &str, path: &[PathSeg]) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    for seg in path {
        skip_ws(bytes, &mut pos);
        match seg {
            PathSeg::Key(_) | PathSeg::Field(_) => {
                let k = seg.name().unwrap_or_default();
                if bytes.get(pos) != Some(&b'{') {
                    return None;
                }
                pos += 1;
                loop {
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) == Some(&b'}') {
                        return None;
                    }
                    let key = read_string(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) != Some(&b':') {
                        return None;
                    }
                    pos += 1;
                    skip_ws(bytes, &mut pos);
                    if key == k {
                        break;
                    }
                    skip_value(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) == Some(&b',') {
                        pos += 1;
                    }
                }
            }
            PathSeg::Idx(i) => {
                if bytes.get(pos) != Some(&b'[') {
                    return None;
                }
                pos += 1;
                for _ in 0..*i {
                    skip_ws(bytes, &mut pos);
                    skip_value(bytes, &mut pos)?;
                    skip_ws(bytes, &mut pos);
                    if bytes.get(pos) != Some(&b',') {
                        return None;
                    }
                    pos += 1;
                }
                skip_ws(bytes, &mut pos);
            }
        }
    }
    Some(line_col(text, pos))
}

/// 1-based line and column of a byte offset; the column counts characters, as editors do.
pub(super) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, pos)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset of serde_json's 1-based line and column (its columns count bytes, so the
/// offset may fall inside a character: it is moved back to that character's start).
pub(super) fn json_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    floor_char_boundary(text, start + column.saturating_sub(1))
}

/// The largest char boundary at or before `pos` (clamped to the text).
pub(super) fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

pub(super) fn skip_ws(b: &[u8], pos: &mut usize) {
    while matches!(b.get(*pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        *pos += 1;
    }
}

pub(super) fn read_string(b: &[u8], pos: &mut usize) -> Option<String> {
    if b.get(*pos) != Some(&b'"') {
        return None;
    }
    let start = *pos + 1;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                *pos = i + 1;
                return Some(String::from_utf8_lossy(&b[start..i]).into_owned());
            }
            _ => i += 1,
        }
    }
    None
}

pub(super) fn skip_value(b: &[u8], pos: &mut usize) -> Option<()> {
    match b.get(*pos)? {
        b'"' => read_string(b, pos).map(|_| ()),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while *pos < b.len() {
                match b[*pos] {
                    b'"' => {
                        read_string(b, pos)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            *pos += 1;
                            return Some(());
                        }
                    }
                    _ => {}
                }
                *pos += 1;
            }
            None
        }
        _ => {
            while *pos < b.len()
                && !matches!(b[*pos], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                *pos += 1;
            }
            Some(())
        }
    }
}
