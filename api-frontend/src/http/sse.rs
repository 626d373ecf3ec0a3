//! Server-Sent Events framing (the `text/event-stream` format).

use bytes::Bytes;

/// One event: `event:` name, optional `id:`, and `data:` (one line per line of `data`).
pub fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + name.len() + 32);
    out.push_str("event: ");
    out.push_str(&single_line(name));
    out.push('\n');
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&single_line(id));
        out.push('\n');
    }
    // A bare CR also ends a line in this format; split on every line ending.
    for line in data.split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A comment line: ignored by clients, it keeps idle connections (and proxies) alive.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {}\n\n", single_line(text)))
}

fn single_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(
            event("stdout", Some("7"), "aGk="),
            Bytes::from_static(b"event: stdout\nid: 7\ndata: aGk=\n\n")
        );
        assert_eq!(
            event("end", None, "a\nb\r\nc"),
            Bytes::from_static(b"event: end\ndata: a\ndata: b\ndata: \ndata: c\n\n")
        );
        assert_eq!(
            event("x\ny", Some("1\n2"), ""),
            Bytes::from_static(b"event: x y\nid: 1 2\ndata: \n\n")
        );
        assert_eq!(
            comment("keep\nalive"),
            Bytes::from_static(b": keep alive\n\n")
        );
    }
}
