//! `X-Forwarded-Proto` on the fast path: the scheme the client used (`http` or `https`) is told
//! to the backend in the upgrade request, replacing whatever the client claimed, so that a
//! plain client cannot pass for a TLS one. (The plain-HTTP path sets the same header through
//! pingora, in `http.rs`.)

use super::head::Head;

/// The header name, as written.
pub const HEADER: &str = "X-Forwarded-Proto";

/// `head` with every `X-Forwarded-Proto` line removed and one saying `proto` added last; the
/// bytes after the head are kept.
pub fn set_proto(head: Head, proto: &str) -> Head {
    let (lines, rest) = head.bytes.split_at(head.len);
    let mut out = Vec::with_capacity(head.bytes.len() + HEADER.len() + proto.len() + 4);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        if line.trim_ascii().is_empty() {
            out.extend_from_slice(format!("{HEADER}: {proto}\r\n").as_bytes());
        } else if is_header(line, HEADER) {
            continue;
        }
        out.extend_from_slice(line);
    }
    let len = out.len();
    out.extend_from_slice(rest);
    Head { bytes: out, len }
}

fn is_header(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && line[name.len()..].trim_ascii_start().first() == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, rest: &str) -> Head {
        Head {
            bytes: format!("{text}{rest}").into_bytes(),
            len: text.len(),
        }
    }

    #[test]
    fn the_claimed_scheme_is_replaced_and_what_follows_is_kept() {
        let h = set_proto(
            head(
                "GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-proto: https\r\nX-Forwarded-Prototype: x\r\n\r\n",
                "\x01\x00",
            ),
            "http",
        );
        let text = String::from_utf8_lossy(&h.bytes[..h.len]);
        assert_eq!(
            text,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Prototype: x\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        assert_eq!(&h.bytes[h.len..], b"\x01\x00");
        let bare = set_proto(head("GET / HTTP/1.1\nHost: a\n\n", ""), "https");
        assert!(
            bare.bytes
                .ends_with(b"Host: a\nX-Forwarded-Proto: https\r\n\n")
        );
    }
}
