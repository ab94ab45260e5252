//! Showing bytes to a person: text where printable, and hex.

use std::fmt::Write;

/// `"back 1\n" [62 61 63 6b 20 31 0a]`: escaped text, then every byte in
/// hex; binary (not printable text, ignoring one trailing line end) as hex
/// only: `11 22 33`. Long inputs are cut after `limit` bytes, with the total
/// length noted.
pub fn text_and_hex(bytes: &[u8], limit: usize) -> String {
    let shown = &bytes[..bytes.len().min(limit)];
    let body = shown
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(shown);
    if !is_printable(body) {
        let mut out = hex(shown);
        if bytes.len() > shown.len() {
            let _ = write!(out, " ... ({} bytes)", bytes.len());
        }
        return out;
    }
    let mut out = String::with_capacity(shown.len() * 4 + 16);
    out.push('"');
    out.push_str(&escape(shown));
    out.push_str("\" [");
    for (i, b) in shown.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out.push(']');
    if bytes.len() > shown.len() {
        let _ = write!(out, " ... ({} bytes)", bytes.len());
    }
    out
}

/// Printable ASCII as is, everything else escaped (`\n`, `\x00`).
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// `TCP` or `UDP`.
pub fn transport(t: longlink_core::Transport) -> &'static str {
    match t {
        longlink_core::Transport::Tcp => "TCP",
        longlink_core::Transport::Udp => "UDP",
    }
}

/// The framing's option name: `raw`, `lines` or `len16`.
pub fn framing(f: longlink_core::Framing) -> &'static str {
    match f {
        longlink_core::Framing::Raw => "raw",
        longlink_core::Framing::Lines => "lines",
        longlink_core::Framing::Len16 => "len16",
    }
}

/// A duration as `1.234s` or `56ms`.
pub fn duration(d: std::time::Duration) -> String {
    if d >= std::time::Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else if d >= std::time::Duration::from_millis(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{}us", d.as_micros())
    }
}

/// Every byte in hex, separated by spaces: `11 22 33`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// True when every byte is printable ASCII or a space or tab: text that
/// reads as what it is.
pub fn is_printable(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// For a person: `"back 1"` when the bytes are printable text, else their
/// hex (`11 22 33`): escapes such as `"\x11\"3"` mislead.
pub fn show(bytes: &[u8]) -> String {
    if is_printable(bytes) {
        format!("\"{}\"", escape(bytes))
    } else {
        hex(bytes)
    }
}

/// Parses hex bytes: pairs of hex digits, optionally separated by spaces,
/// `:` or `,` (`11 22 33`, `112233`, `11:22:33`; a `0x` before a byte is
/// allowed).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 2);
    for word in s.split(|c: char| c.is_ascii_whitespace() || c == ':' || c == ',') {
        let word = word
            .strip_prefix("0x")
            .or_else(|| word.strip_prefix("0X"))
            .unwrap_or(word);
        if word.len() % 2 != 0 {
            return Err(format!("{word:?}: hex bytes come in pairs of digits"));
        }
        for pair in word.as_bytes().chunks(2) {
            let digits = std::str::from_utf8(pair).unwrap_or("?");
            let b = u8::from_str_radix(digits, 16)
                .map_err(|_| format!("{digits:?} is not a hex byte"))?;
            out.push(b);
        }
    }
    Ok(out)
}

/// Parses text with escapes: `\xNN` (a byte in hex), `\n`, `\r`, `\t`,
/// `\0`, `\\`; other bytes as they are.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let b = match s.get(i + 1) {
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let digits = s
                    .get(i + 2..i + 4)
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| u8::from_str_radix(d, 16).ok())
                    .ok_or_else(|| "\\x needs two hex digits (\\x1f)".to_string())?;
                out.push(digits);
                i += 4;
                continue;
            }
            Some(&other) => {
                return Err(format!(
                    "unknown escape \\{} (use \\xNN, \\n, \\r, \\t, \\0 or \\\\)",
                    char::from(other)
                ))
            }
            None => return Err("a line ends in a lone \\ (write \\\\)".into()),
        };
        out.push(b);
        i += 2;
    }
    Ok(out)
}

/// A JSON string literal of `s`.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The fields of a message in a JSON record: `"hex":"11 22 33"`, and
/// `"text":"..."` when the bytes are printable text (`null` otherwise).
pub fn json_bytes(bytes: &[u8]) -> String {
    let text = if is_printable(bytes) {
        json_string(&String::from_utf8_lossy(bytes))
    } else {
        "null".to_string()
    };
    format!(
        "\"len\":{},\"hex\":{},\"text\":{text}",
        bytes.len(),
        json_string(&hex(bytes))
    )
}

/// The time as RFC 3339 in UTC, to the millisecond
/// (`2026-12-01T23:25:33.123Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_text_and_hex() {
        assert_eq!(text_and_hex(b"bin", 64), "\"bin\" [62 69 6e]");
        assert_eq!(text_and_hex(&[0x11, 0x22, 0x33], 64), "11 22 33");
        assert_eq!(text_and_hex(&[0, 1, 2], 2), "00 01 ... (3 bytes)");
        assert_eq!(text_and_hex(b"abcdef", 2), "\"ab\" [61 62] ... (6 bytes)");
    }

    #[test]
    fn binary_shows_as_hex_and_text_as_text() {
        assert_eq!(show(&[0x11, 0x22, 0x33]), "11 22 33");
        assert_eq!(show(b"back 1"), "\"back 1\"");
        assert_eq!(hex(b""), "");
    }

    #[test]
    fn parses_hex_and_escapes() {
        assert_eq!(parse_hex("11 22 33"), Ok(vec![0x11, 0x22, 0x33]));
        assert_eq!(parse_hex("112233"), Ok(vec![0x11, 0x22, 0x33]));
        assert_eq!(parse_hex("0x11:0x22,ff"), Ok(vec![0x11, 0x22, 0xff]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        for bad in ["1", "1g", "123", "zz"] {
            assert!(parse_hex(bad).is_err(), "{bad}");
        }
        assert_eq!(
            unescape(br"a\x11\x22\x33\n\\"),
            Ok(b"a\x11\x22\x33\n\\".to_vec())
        );
        for bad in [&br"\x1"[..], br"\q", br"end\"] {
            assert!(unescape(bad).is_err());
        }
    }

    #[test]
    fn json_records_escape_and_mark_binary() {
        assert_eq!(json_string("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
        assert_eq!(json_bytes(b"hi"), r#""len":2,"hex":"68 69","text":"hi""#);
        assert_eq!(
            json_bytes(&[0x11, 0x22]),
            r#""len":2,"hex":"11 22","text":null"#
        );
    }

    #[test]
    fn rfc3339_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_631_533_123);
        assert_eq!(rfc3339(t), "2025-12-01T23:25:33.123Z");
    }

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(duration(Duration::from_micros(2500)), "2.5ms");
        assert_eq!(duration(Duration::from_micros(20)), "20us");
    }
}
