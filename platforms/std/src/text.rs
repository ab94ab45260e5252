//! Showing bytes to a person: text where printable, and hex.

use std::fmt::Write;

/// `"back 1\n" [62 61 63 6b 20 31 0a]`: escaped text, then every byte in
/// hex. Long inputs are cut after `limit` bytes, with the total length noted.
pub fn text_and_hex(bytes: &[u8], limit: usize) -> String {
    let shown = &bytes[..bytes.len().min(limit)];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_text_and_hex() {
        assert_eq!(text_and_hex(b"bin", 64), "\"bin\" [62 69 6e]");
        assert_eq!(
            text_and_hex(&[0x11, 0x22, 0x33], 64),
            "\"\\x11\\\"3\" [11 22 33]"
        );
        assert_eq!(text_and_hex(b"abcdef", 2), "\"ab\" [61 62] ... (6 bytes)");
    }

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(duration(Duration::from_micros(2500)), "2.5ms");
        assert_eq!(duration(Duration::from_micros(20)), "20us");
    }
}
