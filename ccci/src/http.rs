//! The one HTTP/1.1 server codec: the bridge's endpoints and the stand-ins both read requests
//! and write answers with it. One request per connection (`Connection: close`), and every read
//! bounded by a deadline the caller sets, so a client trickling bytes gains nothing.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Why a request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// The client was too slow: 408.
    Slow,
    /// Too large: 431 for a head, 413 for a body.
    Large,
    /// Not HTTP/1.x, or a body that is not what its head announced: 400.
    Garbled,
    /// Gone: nothing to answer.
    Gone,
}

/// A request line and its headers.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    /// As sent: the path and any query string, not decoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The raw query string, empty when there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The announced `Content-Length`: `Ok(None)` when absent, `Garbled` when not a number.
    pub fn content_length(&self) -> Result<Option<u64>, Unread> {
        self.header("Content-Length")
            .map(|v| v.parse::<u64>().map_err(|_| Unread::Garbled))
            .transpose()
    }

    pub fn chunked(&self) -> bool {
        self.header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// Reads until `complete` says the bytes are whole, `max` is passed or the deadline is: each
/// read waits at most what is left of it.
fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    max: usize,
    complete: impl Fn(&[u8]) -> bool,
) -> Result<(), Unread> {
    let mut chunk = [0u8; 8192];
    while !complete(buf) {
        if buf.len() > max {
            return Err(Unread::Large);
        }
        match read_some(s, &mut chunk, deadline) {
            Ok(0) => return Err(Unread::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One read that waits at most until `deadline`.
fn read_some(s: &mut TcpStream, out: &mut [u8], deadline: Instant) -> Result<usize, Unread> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unread::Slow);
        }
        s.set_read_timeout(Some(left)).map_err(|_| Unread::Gone)?;
        match s.read(out) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Unread::Slow)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Unread::Gone),
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The request line and headers, within `deadline` and `max` bytes. The returned [`Body`]
/// reads what follows them, under the same deadline unless [`Body::deadline`] moves it.
pub fn read_head(
    s: &mut TcpStream,
    deadline: Instant,
    max: usize,
) -> Result<(Head, Body<'_>), Unread> {
    let mut buf = Vec::with_capacity(1024);
    read_until(s, &mut buf, deadline, max, |b| head_end(b).is_some())?;
    let end = head_end(&buf).expect("complete");
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| Unread::Garbled)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(Unread::Garbled);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(Unread::Garbled);
    }
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':').ok_or(Unread::Garbled)?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    };
    let rest = buf.split_off(end + 4);
    Ok((
        head,
        Body {
            rest,
            pos: 0,
            stream: s,
            deadline,
        },
    ))
}

/// What follows a request's head: the bytes read with it, then the connection.
pub struct Body<'a> {
    rest: Vec<u8>,
    pos: usize,
    stream: &'a mut TcpStream,
    deadline: Instant,
}

impl Body<'_> {
    /// Gives the body until `deadline` (from now, typically) to arrive.
    pub fn deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn some(&mut self, out: &mut [u8]) -> Result<usize, Unread> {
        if self.pos < self.rest.len() {
            let n = out.len().min(self.rest.len() - self.pos);
            out[..n].copy_from_slice(&self.rest[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        read_some(self.stream, out, self.deadline)
    }

    /// Exactly `len` bytes into `out`; `Gone` when the client stops short.
    pub fn copy_to(&mut self, len: u64, out: &mut impl Write) -> Result<(), Unread> {
        let mut left = len;
        let mut chunk = [0u8; 16 * 1024];
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.some(&mut chunk[..want])?;
            if n == 0 {
                return Err(Unread::Gone);
            }
            out.write_all(&chunk[..n]).map_err(|_| Unread::Gone)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Exactly `len` bytes, refused as `Large` over `max` before any is read.
    pub fn read(&mut self, len: u64, max: u64) -> Result<Vec<u8>, Unread> {
        if len > max {
            return Err(Unread::Large);
        }
        let mut out = Vec::with_capacity(len as usize);
        self.copy_to(len, &mut out)?;
        Ok(out)
    }

    /// A `Transfer-Encoding: chunked` body, at most `max` bytes decoded.
    pub fn read_chunked(&mut self, max: usize) -> Result<Vec<u8>, Unread> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| Unread::Garbled)?;
            if body.len() + size > max {
                return Err(Unread::Large);
            }
            self.copy_to(size as u64, &mut body)?;
            if !self.line()?.is_empty() && size > 0 {
                return Err(Unread::Garbled);
            }
            if size == 0 {
                // Trailers are not sent by the clients here; the empty line ends the body.
                return Ok(body);
            }
        }
    }

    /// One CRLF-terminated line of a chunked body, without its end.
    fn line(&mut self) -> Result<String, Unread> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() > 1024 {
                return Err(Unread::Garbled);
            }
            if self.some(&mut b)? == 0 {
                return Err(Unread::Gone);
            }
            line.push(b[0]);
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| Unread::Garbled)
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Entity",
        423 => "Locked",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes an answer. `cut` sends only that many body bytes while announcing the whole
/// length, which is what a connection dropped mid-body looks like to the client.
pub fn write_response(
    s: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // 204 and 304 carry no body and no length, per RFC 9110.
    let body = if status == 204 || status == 304 {
        &[][..]
    } else {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        body
    };
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    let body = &body[..cut.unwrap_or(body.len()).min(body.len())];
    s.write_all(body)?;
    s.flush()
}

/// Closes our side, then reads (and drops) up to `max` bytes for at most `within`: a client
/// still sending a body we refused then reads the answer instead of a reset.
pub fn drain_and_close(s: &mut TcpStream, max: usize, within: Duration) {
    let _ = s.shutdown(Shutdown::Write);
    let until = Instant::now() + within;
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < max {
        match read_some(s, &mut sink, until) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Sends `raw` to a one-shot server that reads a head and a body as `f` says.
    fn exchange<T: Send + 'static>(
        raw: &'static [u8],
        f: impl FnOnce(&mut TcpStream) -> T + Send + 'static,
    ) -> T {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            f(&mut s)
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(raw).unwrap();
        let out = server.join().unwrap();
        drop(c);
        out
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn a_head_and_a_sized_body() {
        let (m, t, body) = exchange(
            b"POST /a/b?x=1 HTTP/1.1\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            |s| {
                let (h, mut b) = read_head(s, soon(), 1024).unwrap();
                assert_eq!((h.path(), h.query()), ("/a/b", "x=1"));
                assert_eq!(h.header("x-a"), Some("b"));
                let len = h.content_length().unwrap().unwrap();
                (h.method, h.target, b.read(len, 10).unwrap())
            },
        );
        assert_eq!((m.as_str(), t.as_str()), ("POST", "/a/b?x=1"));
        assert_eq!(body, b"hello");
    }

    #[test]
    fn a_chunked_body() {
        let body = exchange(
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            |s| {
                let (h, mut b) = read_head(s, soon(), 1024).unwrap();
                assert!(h.chunked());
                b.read_chunked(100)
            },
        );
        assert_eq!(body.unwrap(), b"abcde");
    }

    #[test]
    fn refusals() {
        let big = exchange(
            b"GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            |s| read_head(s, soon(), 16).map(|_| ()).unwrap_err(),
        );
        assert_eq!(big, Unread::Large);
        let garbled = exchange(b"hello there\r\n\r\n", |s| {
            read_head(s, soon(), 1024).map(|_| ()).unwrap_err()
        });
        assert_eq!(garbled, Unread::Garbled);
        let slow = exchange(b"GET / HTTP/1.1\r\n", |s| {
            let end = Instant::now() + Duration::from_millis(200);
            read_head(s, end, 1024).map(|_| ()).unwrap_err()
        });
        assert_eq!(slow, Unread::Slow);
        let over = exchange(b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\n", |s| {
            let (h, mut b) = read_head(s, soon(), 1024).unwrap();
            b.read(h.content_length().unwrap().unwrap(), 10)
                .unwrap_err()
        });
        assert_eq!(over, Unread::Large);
    }

    #[test]
    fn no_length_on_204_and_a_cut_body_keeps_its_length() {
        let mut out = Vec::new();
        write_response(&mut out, 204, &[], b"ignored", None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response(&mut out, 200, &[], b"abcdef", Some(3)).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("Content-Length: 6\r\nConnection: close\r\n\r\nabc"));
    }
}
