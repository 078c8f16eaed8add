//! A small SMTP client for handing copies to the corporate relay: EHLO (HELO as a fallback),
//! one connection reused for many transactions, PIPELINING when the relay offers it
//! (RFC 2920), 8BITMIME and SMTPUTF8 passed on when the message needs them, and nothing else —
//! in particular no DSN parameters (RFC 3461), so no notification is ever requested.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Longest reply line read from the relay.
const MAX_REPLY_LINE: usize = 4096;

/// One copy to hand over.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// The envelope sender (the tenant's bounce address).
    pub from: &'a str,
    /// The envelope recipients.
    pub rcpts: &'a [String],
    /// The message, CRLF line ends, not dot-stuffed.
    pub data: &'a [u8],
    /// The message needs 8BITMIME.
    pub eightbit: bool,
    /// The envelope or the headers need SMTPUTF8.
    pub smtputf8: bool,
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The relay took the message for the recipients not listed in `retry` (refused for now)
    /// or `rejected` (refused for good).
    Done {
        /// Recipients refused with 4xx.
        retry: Vec<String>,
        /// Recipients refused with 5xx.
        rejected: Vec<String>,
    },
    /// The relay refused the whole transaction for now.
    TempFail(String),
    /// The relay refused the whole transaction for good.
    PermFail(String),
}

/// Why the connection is no longer usable.
#[derive(Debug, thiserror::Error)]
#[error("relay connection: {0}")]
pub struct ConnError(String);

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// An open SMTP session with the relay.
pub struct Connection {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
    pipelining: bool,
    eightbit: bool,
    smtputf8: bool,
    timeout: Duration,
}

/// A reply: its code and its text (lines joined).
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn class(&self) -> u16 {
        self.code / 100
    }
}

impl Connection {
    /// Connects, reads the greeting, and says EHLO (HELO when EHLO is refused).
    pub async fn open(
        relay: SocketAddr,
        hostname: &str,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(relay))
            .await
            .map_err(|_| ConnError("connect timed out".into()))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w: BufWriter::new(w),
            pipelining: false,
            eightbit: false,
            smtputf8: false,
            timeout,
        };
        let greeting = c.read_reply().await?;
        if greeting.class() != 2 {
            return Err(ConnError(format!(
                "greeting {} {}",
                greeting.code, greeting.text
            )));
        }
        c.command(&format!("EHLO {hostname}")).await?;
        let ehlo = c.read_reply().await?;
        if ehlo.class() == 2 {
            for line in ehlo.text.lines() {
                let ext = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                match ext.as_str() {
                    "PIPELINING" => c.pipelining = true,
                    "8BITMIME" => c.eightbit = true,
                    "SMTPUTF8" => c.smtputf8 = true,
                    _ => {}
                }
            }
        } else {
            c.command(&format!("HELO {hostname}")).await?;
            let helo = c.read_reply().await?;
            if helo.class() != 2 {
                return Err(ConnError(format!(
                    "HELO refused: {} {}",
                    helo.code, helo.text
                )));
            }
        }
        Ok(c)
    }

    async fn command(&mut self, line: &str) -> Result<(), ConnError> {
        self.w.write_all(line.as_bytes()).await?;
        self.w.write_all(b"\r\n").await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        tokio::time::timeout(self.timeout, self.w.flush())
            .await
            .map_err(|_| ConnError("write timed out".into()))??;
        Ok(())
    }

    async fn read_reply(&mut self) -> Result<Reply, ConnError> {
        self.flush().await?;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.r.read_line(&mut line))
                .await
                .map_err(|_| ConnError("reply timed out".into()))??;
            if n == 0 {
                return Err(ConnError("relay closed the connection".into()));
            }
            let (code, more, rest) = reply_line(&line)?;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(rest);
            if !more {
                return Ok(Reply { code, text });
            }
        }
    }

    /// Hands one copy over. `Err`: the connection broke, and the outcome is unknown to the
    /// relay's side only if it broke after the final dot (the caller retries: at least once).
    pub async fn send(&mut self, tx: &Transaction<'_>) -> Result<Sent, ConnError> {
        if tx.smtputf8 && !self.smtputf8 {
            return Ok(Sent::PermFail("the relay does not offer SMTPUTF8".into()));
        }
        let mut mail = format!("MAIL FROM:<{}>", tx.from);
        if tx.eightbit && self.eightbit {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let mut retry = Vec::new();
        let mut rejected = Vec::new();
        let mut accepted = 0usize;
        if self.pipelining {
            self.command(&mail).await?;
            for r in tx.rcpts {
                self.command(&format!("RCPT TO:<{r}>")).await?;
            }
            self.command("DATA").await?;
            let m = self.read_reply().await?;
            for r in tx.rcpts {
                let reply = self.read_reply().await?;
                sort(&reply, r, &mut accepted, &mut retry, &mut rejected);
            }
            let data = self.read_reply().await?;
            if m.class() != 2 {
                return Ok(whole(&m));
            }
            if data.code != 354 {
                if accepted == 0 {
                    return Ok(Sent::Done { retry, rejected });
                }
                return Ok(whole(&data));
            }
            if accepted == 0 {
                // Nothing to send to; end the DATA with an empty message the relay refuses.
                self.w.write_all(b".\r\n").await?;
                let _ = self.read_reply().await?;
                return Ok(Sent::Done { retry, rejected });
            }
        } else {
            self.command(&mail).await?;
            let m = self.read_reply().await?;
            if m.class() != 2 {
                self.reset().await?;
                return Ok(whole(&m));
            }
            for r in tx.rcpts {
                self.command(&format!("RCPT TO:<{r}>")).await?;
                let reply = self.read_reply().await?;
                sort(&reply, r, &mut accepted, &mut retry, &mut rejected);
            }
            if accepted == 0 {
                self.reset().await?;
                return Ok(Sent::Done { retry, rejected });
            }
            self.command("DATA").await?;
            let data = self.read_reply().await?;
            if data.code != 354 {
                self.reset().await?;
                return Ok(whole(&data));
            }
        }
        self.write_body(tx.data).await?;
        let end = self.read_reply().await?;
        Ok(match end.class() {
            2 => Sent::Done { retry, rejected },
            _ => whole(&end),
        })
    }

    async fn write_body(&mut self, data: &[u8]) -> Result<(), ConnError> {
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                self.w.write_all(b".").await?;
            }
            self.w.write_all(line).await?;
        }
        if !data.is_empty() && !data.ends_with(b"\n") {
            self.w.write_all(b"\r\n").await?;
        }
        self.w.write_all(b".\r\n").await?;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), ConnError> {
        self.command("RSET").await?;
        let r = self.read_reply().await?;
        if r.class() != 2 {
            return Err(ConnError(format!("RSET refused: {}", r.code)));
        }
        Ok(())
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        if self.command("QUIT").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }
}

fn sort(
    reply: &Reply,
    rcpt: &str,
    accepted: &mut usize,
    retry: &mut Vec<String>,
    rejected: &mut Vec<String>,
) {
    match reply.class() {
        2 => *accepted += 1,
        5 => rejected.push(rcpt.to_string()),
        _ => retry.push(rcpt.to_string()),
    }
}

fn whole(reply: &Reply) -> Sent {
    let text = format!("{} {}", reply.code, reply.text);
    if reply.class() == 5 {
        Sent::PermFail(text)
    } else {
        Sent::TempFail(text)
    }
}

/// One line of an SMTP reply (RFC 5321 4.2): its three-digit code, whether more lines follow
/// (`250-…`), and its text. Anything else, including a line whose first three bytes are not
/// ASCII digits, is a malformed reply, never a panic.
fn reply_line(line: &str) -> Result<(u16, bool, &str), ConnError> {
    if line.len() > MAX_REPLY_LINE {
        return Err(ConnError("malformed reply".into()));
    }
    let code = match line.as_bytes().get(..3) {
        Some(digits) if digits.iter().all(u8::is_ascii_digit) => digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
        _ => return Err(ConnError("malformed reply code".into())),
    };
    let more = line.as_bytes().get(3) == Some(&b'-');
    Ok((code, more, line.get(4..).unwrap_or_default().trim_end()))
}

#[cfg(test)]
mod reply_tests {
    use super::reply_line;

    #[test]
    fn reply_lines_parse_and_anything_else_is_an_error_not_a_panic() {
        assert_eq!(reply_line("250-first\r\n").unwrap(), (250, true, "first"));
        assert_eq!(
            reply_line("550 5.1.1 no\r\n").unwrap(),
            (550, false, "5.1.1 no")
        );
        assert_eq!(reply_line("354\r\n").unwrap(), (354, false, ""));
        // Not ASCII where the code should be: the third byte falls inside a character.
        for bad in ["22é rejected\r\n", "é\r\n", "ab\r\n", "", "2", "+OK\r\n"] {
            assert!(reply_line(bad).is_err(), "{bad:?}");
        }
    }
}
