//! A tiny authoritative DNS server on loopback for the mail tests: TXT records from a table,
//! `NXDOMAIN` for every other name, `SERVFAIL` or silence for the names a test says are
//! broken. Over UDP an answer longer than 512 bytes is truncated (`TC`, no records), so the
//! resolver must come back over TCP on the same port, as it would for a large DKIM key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the server answers for a name.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These TXT records.
    Txt(Vec<String>),
    /// `SERVFAIL`.
    ServFail,
    /// No answer at all (the resolver times out).
    Silent,
}

/// The running server; stops when dropped.
pub struct TestDns {
    /// UDP and TCP, same port.
    pub addr: SocketAddr,
    tcp_queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TestDns {
    /// Serves `zone` (lowercase names without the final dot).
    pub async fn start(zone: HashMap<String, Answer>) -> Self {
        let zone = Arc::new(zone);
        // The same port for UDP and TCP: take a free UDP port, then its TCP twin.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let udp_zone = zone.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(mut reply) = answer(&udp_zone, &buf[..n]) {
                    if reply.len() > 512 {
                        reply = truncated(&buf[..n]);
                    }
                    let _ = udp.send_to(&reply, from).await;
                }
            }
        });
        let counter = tcp_queries.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    return;
                };
                let zone = zone.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        let Some(reply) = answer(&zone, &q) else {
                            continue;
                        };
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            tcp_queries,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Queries that came over TCP so far.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// The question's name (lowercase, no final dot), type, and where the question ends.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    Some((labels.join("."), qtype, pos + 4))
}

/// The header and question of `q` as a response with `rcode` and `answers` records.
fn response(q: &[u8], end: usize, rcode: u8, answers: u16, truncated: bool) -> Vec<u8> {
    let mut r = q[..end].to_vec();
    // QR, AA, TC as asked, RD copied; RA; rcode.
    r[2] = 0x84 | (q[2] & 0x01) | if truncated { 0x02 } else { 0 };
    r[3] = 0x80 | rcode;
    r[4..6].copy_from_slice(&1u16.to_be_bytes());
    r[6..8].copy_from_slice(&answers.to_be_bytes());
    r[8..12].fill(0);
    r
}

fn truncated(q: &[u8]) -> Vec<u8> {
    let (_, _, end) = question(q).expect("answered before");
    response(q, end, 0, 0, true)
}

fn answer(zone: &HashMap<String, Answer>, q: &[u8]) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(q)?;
    match zone.get(&name) {
        None => Some(response(q, end, 3, 0, false)),
        Some(Answer::Silent) => None,
        Some(Answer::ServFail) => Some(response(q, end, 2, 0, false)),
        Some(Answer::Txt(records)) if qtype == 16 => {
            let mut r = response(q, end, 0, records.len() as u16, false);
            for record in records {
                let mut rdata = Vec::new();
                for chunk in record.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
                r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                r.extend_from_slice(&rdata);
            }
            Some(r)
        }
        // The name exists, without records of that type.
        Some(Answer::Txt(_)) => Some(response(q, end, 0, 0, false)),
    }
}
