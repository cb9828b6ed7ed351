//! Server-sent events: an incremental parser for backend streams and the encoder for client
//! streams (WHATWG HTML "server-sent events").

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl Event {
    pub fn message(data: String) -> Event {
        Event {
            data,
            ..Default::default()
        }
    }

    /// The wire form, ending with the blank line that dispatches it.
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {retry}\n"));
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// Feeds bytes in, gets complete events out. Lines may end in `\n`, `\r\n` or `\r`.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    current: Event,
    has_data: bool,
    has_fields: bool,
}

impl Parser {
    /// Bytes buffered but not yet parsed into a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A lone '\r' at the end may be the first half of "\r\n": wait for more.
            if self.buf[pos] == b'\r' && pos + 1 == self.buf.len() {
                break;
            }
            let line = self.buf.split_to(pos);
            let skip = if self.buf[0] == b'\r' && self.buf.get(1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let _ = self.buf.split_to(skip);
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data || self.has_fields {
                    let mut event = std::mem::take(&mut self.current);
                    if event.data.ends_with('\n') {
                        event.data.pop();
                    }
                    events.push(event);
                }
                self.has_data = false;
                self.has_fields = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    self.current.data.push_str(value);
                    self.current.data.push('\n');
                    self.has_data = true;
                }
                "event" => {
                    self.current.event = Some(value.to_string());
                    self.has_fields = true;
                }
                "id" if !value.contains('\0') => {
                    self.current.id = Some(value.to_string());
                    self.has_fields = true;
                }
                "retry" => {
                    if let Ok(ms) = value.parse() {
                        self.current.retry = Some(ms);
                        self.has_fields = true;
                    }
                }
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_chunks_and_line_endings() {
        let mut p = Parser::default();
        let mut events = p.push(b"id: 1\r\nevent: message\r\ndata: {\"a\":");
        assert!(events.is_empty());
        events.extend(
            p.push(b"1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\nid: 2\ndata:\n\nretry: 500\n\n"),
        );
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].id.as_deref(), Some("1"));
        assert_eq!(events[0].event.as_deref(), Some("message"));
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].data, "x\ny");
        assert_eq!(
            events[2].id.as_deref(),
            Some("2"),
            "priming event: id with empty data"
        );
        assert_eq!(events[2].data, "");
        assert_eq!(events[3].retry, Some(500));
    }

    #[test]
    fn encode_round_trips() {
        let e = Event {
            id: Some("7".into()),
            event: Some("message".into()),
            data: "line1\nline2".into(),
            retry: None,
        };
        let mut p = Parser::default();
        assert_eq!(p.push(&e.encode()), vec![e]);
    }
}
