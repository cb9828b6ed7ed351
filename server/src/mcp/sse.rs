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

/// An event (or a line of one) larger than the stream's limit: the stream must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Feeds bytes in, gets complete events out. Lines may end in `\n`, `\r\n` or `\r`.
///
/// Linear in the bytes fed: each byte is scanned for a line end once (`scanned` remembers how
/// far the buffered partial line was searched). What one event may hold (its partial line and
/// its data so far) is bounded by `limit`; past it `push` fails and the stream must be dropped.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    /// `buf[..scanned]` holds no line end.
    scanned: usize,
    limit: usize,
    current: Event,
    has_data: bool,
    has_fields: bool,
}

impl Parser {
    /// A parser whose events may hold at most `limit` bytes.
    pub fn new(limit: usize) -> Parser {
        Parser {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
            current: Event::default(),
            has_data: false,
            has_fields: false,
        }
    }

    /// Bytes held for the event in progress (its partial line and its data so far).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.current.data.len()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let Some(found) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                break;
            };
            let pos = self.scanned + found;
            // A lone '\r' at the end may be the first half of "\r\n": wait for more.
            if self.buf[pos] == b'\r' && pos + 1 == self.buf.len() {
                self.scanned = pos;
                break;
            }
            let line = self.buf.split_to(pos);
            let skip = if self.buf[0] == b'\r' && self.buf.get(1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let _ = self.buf.split_to(skip);
            self.scanned = 0;
            self.line(&line, &mut events);
            if self.current.data.len() > self.limit {
                return Err(TooLarge);
            }
        }
        if self.pending() > self.limit {
            return Err(TooLarge);
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        let line = String::from_utf8_lossy(line);
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
            return;
        }
        if line.starts_with(':') {
            return;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_chunks_and_line_endings() {
        let mut p = Parser::new(1 << 20);
        let mut events = p.push(b"id: 1\r\nevent: message\r\ndata: {\"a\":").unwrap();
        assert!(events.is_empty());
        events.extend(
            p.push(b"1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\nid: 2\ndata:\n\nretry: 500\n\n")
                .unwrap(),
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
        let mut p = Parser::new(1 << 20);
        assert_eq!(p.push(&e.encode()), Ok(vec![e]));
    }

    #[test]
    fn split_line_ends_and_byte_by_byte_feeding() {
        let wire = b"data: a\r\n\r\ndata: b\r\rdata: c\n\n";
        let mut p = Parser::new(1 << 20);
        let mut events = Vec::new();
        for b in wire {
            events.extend(p.push(&[*b]).unwrap());
        }
        let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a", "b", "c"]);
    }

    #[test]
    fn an_event_over_the_limit_fails_however_it_is_built() {
        // One long line, fed in small chunks.
        let mut p = Parser::new(1000);
        let mut result = Ok(Vec::new());
        for _ in 0..100 {
            result = p.push(b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(TooLarge));
        // Many short data lines of one event.
        let mut p = Parser::new(1000);
        let many = "data: x\n".repeat(600);
        assert_eq!(p.push(many.as_bytes()), Err(TooLarge));
        // Many events, each within the limit, are fine.
        let mut p = Parser::new(1000);
        let events = "data: x\n\n".repeat(600);
        assert_eq!(p.push(events.as_bytes()).unwrap().len(), 600);
    }

    #[test]
    fn a_large_event_in_many_chunks_is_whole() {
        // 8 MiB in 128 chunks of 64 KiB (a rescan per chunk would scan 128 × 4 MiB on average;
        // the time is printed, not asserted).
        let mut p = Parser::new(16 << 20);
        let chunk = vec![b'x'; 64 * 1024];
        p.push(b"data: ").unwrap();
        let started = std::time::Instant::now();
        for _ in 0..128 {
            assert!(p.push(&chunk).unwrap().is_empty());
        }
        let events = p.push(b"\n\n").unwrap();
        assert_eq!(events[0].data.len(), 128 * 64 * 1024);
        assert_eq!(p.pending(), 0);
        eprintln!("8 MiB event in 128 chunks: {:?}", started.elapsed());
    }
}
