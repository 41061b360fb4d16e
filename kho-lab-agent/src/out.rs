//! Console report lines: `KHO-LAB ` followed by one JSON object.

use std::io::Write;

/// The prefix of every report line.
pub const PREFIX: &str = "KHO-LAB ";

/// A JSON object under construction, written as one console line.
pub struct Line {
    buf: String,
    first: bool,
}

impl Line {
    /// Starts an object whose `t` member (the line's type) is `kind`.
    pub fn new(kind: &str) -> Self {
        let mut line = Line { buf: String::from("{"), first: true };
        line.key("t");
        escape_into(&mut line.buf, kind);
        line
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        escape_into(&mut self.buf, key);
        self.buf.push(':');
    }

    /// Adds a string member.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        escape_into(&mut self.buf, value);
        self
    }

    /// Adds an unsigned integer member.
    pub fn num(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        self.buf.push_str(&value.to_string());
        self
    }

    /// Adds a signed integer member.
    pub fn int(mut self, key: &str, value: i64) -> Self {
        self.key(key);
        self.buf.push_str(&value.to_string());
        self
    }

    /// Adds a boolean member.
    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds bytes as a lowercase hex string.
    pub fn hex(mut self, key: &str, bytes: &[u8]) -> Self {
        self.key(key);
        self.buf.push('"');
        for b in bytes {
            self.buf.push(char::from(HEX[usize::from(b >> 4)]));
            self.buf.push(char::from(HEX[usize::from(b & 15)]));
        }
        self.buf.push('"');
        self
    }

    /// Adds an array of `[start, count]` pairs.
    pub fn runs(mut self, key: &str, runs: &[(u64, u64)]) -> Self {
        self.key(key);
        self.buf.push('[');
        for (i, (start, count)) in runs.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&format!("[{start},{count}]"));
        }
        self.buf.push(']');
        self
    }

    /// The finished line, prefix and newline included.
    pub fn render(&self) -> String {
        format!("{PREFIX}{}}}\n", self.buf)
    }

    /// Writes the line to standard output (the console) in one write.
    pub fn emit(self) {
        let text = self.render();
        let mut stdout = std::io::stdout().lock();
        // Nothing can be done about a console that refuses output.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal.
pub fn escape_into(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => buf.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_json_object_per_line() {
        let line = Line::new("memfd")
            .str("session", "lab0-s0")
            .num("token", 7)
            .int("errno", -2)
            .bool("ok", true)
            .hex("data", &[0, 0xab, 0x10])
            .runs("pfns", &[(0x1000, 3), (0x2000, 1)])
            .render();
        assert_eq!(
            line,
            "KHO-LAB {\"t\":\"memfd\",\"session\":\"lab0-s0\",\"token\":7,\"errno\":-2,\"ok\":true,\
             \"data\":\"00ab10\",\"pfns\":[[4096,3],[8192,1]]}\n"
        );
    }

    #[test]
    fn escapes_control_characters_and_quotes() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd\u{1}e");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001e\"");
    }
}
