//! A UDP relay on loopback that can cut a link, for the network faults of walb-tools'
//! scenarios (e9-e12 put its `packet-repeater` between two servers).
//!
//! A daemon is told to reach a peer at the relay's address; the relay forwards every
//! datagram to the peer from one socket per client (so that the answers find their way
//! back) and the answers to the client. While cut, datagrams are dropped both ways, as on
//! a broken network: QUIC notices only by its timeouts, and a restored link carries the
//! same connections on. A rate limit on the client → target direction makes a slow link
//! (a copy that lasts long enough to be cut). Plain threads, no runtime: it runs beside
//! blocking tests.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65536;

struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    dropped: AtomicU64,
    /// Client → target bytes per second (0: unlimited).
    rate: AtomicU64,
}

/// A running relay (stopped when dropped).
pub struct Repeater {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Repeater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeater")
            .field("addr", &self.addr)
            .field("cut", &self.is_cut())
            .finish()
    }
}

impl Repeater {
    /// A relay on a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Repeater> {
        Repeater::start_on("127.0.0.1:0".parse().map_err(io::Error::other)?, target)
    }

    /// A relay listening on `listen` (port 0: any free one) to `target`.
    pub fn start_on(listen: SocketAddr, target: SocketAddr) -> io::Result<Repeater> {
        let front = Arc::new(UdpSocket::bind(listen)?);
        front.set_read_timeout(Some(TICK))?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            rate: AtomicU64::new(0),
        });
        let threads = Arc::new(Mutex::new(Vec::new()));
        let h = {
            let (shared, threads) = (Arc::clone(&shared), Arc::clone(&threads));
            std::thread::spawn(move || forward(front, target, shared, threads))
        };
        threads.lock().unwrap_or_else(|p| p.into_inner()).push(h);
        Ok(Repeater {
            addr,
            shared,
            threads,
        })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`true`) or restores (`false`) the link.
    pub fn cut(&self, on: bool) {
        self.shared.cut.store(on, Ordering::Relaxed);
    }

    /// Limits the client → target direction to `bytes_per_s` (0: no limit), a slow link
    /// that makes a copy last long enough to be cut in the middle.
    pub fn set_rate(&self, bytes_per_s: u64) {
        self.shared.rate.store(bytes_per_s, Ordering::Relaxed);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::Relaxed)
    }

    /// Datagrams dropped while cut.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Repeater {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let hs: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for h in hs {
            let _ = h.join();
        }
    }
}

/// Client → target, one upstream socket per client, each with a thread for the answers.
fn forward(
    front: Arc<UdpSocket>,
    target: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut ups: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut pace = Pace::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, client) = match front.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => continue,
        };
        if shared.cut.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let up = match ups.get(&client) {
            Some(u) => Arc::clone(u),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
                    continue;
                };
                if u.set_read_timeout(Some(TICK)).is_err() {
                    continue;
                }
                let u = Arc::new(u);
                ups.insert(client, Arc::clone(&u));
                let (u2, f2, s2) = (Arc::clone(&u), Arc::clone(&front), Arc::clone(&shared));
                let h = std::thread::spawn(move || back(u2, f2, client, s2));
                threads.lock().unwrap_or_else(|p| p.into_inner()).push(h);
                u
            }
        };
        pace.wait(n as u64, shared.rate.load(Ordering::Relaxed));
        let _ = up.send_to(&buf[..n], target);
    }
}

/// Holds a direction to a byte rate (restarts its budget when the rate changes).
#[derive(Default)]
struct Pace {
    rate: u64,
    since: Option<std::time::Instant>,
    bytes: u64,
}

impl Pace {
    /// Before sending `n` bytes: sleeps as long as `rate` asks.
    fn wait(&mut self, n: u64, rate: u64) {
        if rate != self.rate || self.since.is_none() {
            self.rate = rate;
            self.since = Some(std::time::Instant::now());
            self.bytes = 0;
        }
        self.bytes += n;
        if let (Some(t0), true) = (self.since, rate > 0) {
            let due = t0 + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

/// Target → client for one client.
fn back(up: Arc<UdpSocket>, front: Arc<UdpSocket>, client: SocketAddr, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match up.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(_) => continue,
        };
        if shared.cut.load(Ordering::Relaxed) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = front.send_to(&buf[..n], client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback; stops with the returned flag.
    fn echo() -> (SocketAddr, Arc<AtomicBool>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(TICK)).unwrap();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut b = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut b) {
                    let _ = s.send_to(&b[..n], from);
                }
            }
        });
        (addr, stop)
    }

    fn ask(c: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        c.send_to(msg, to).unwrap();
        let mut b = [0u8; 1500];
        match c.recv_from(&mut b) {
            Ok((n, _)) => Some(b[..n].to_vec()),
            Err(_) => None,
        }
    }

    #[test]
    fn datagrams_go_both_ways_until_cut_and_again_once_restored() {
        let (server, stop) = echo();
        let r = Repeater::start(server).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(ask(&c, r.addr(), b"one").as_deref(), Some(&b"one"[..]));
        r.cut(true);
        assert_eq!(
            ask(&c, r.addr(), b"two"),
            None,
            "a cut link carries nothing"
        );
        assert!(r.dropped() >= 1);
        r.cut(false);
        assert_eq!(ask(&c, r.addr(), b"three").as_deref(), Some(&b"three"[..]));
        // A second client gets its own answers.
        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        c2.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(ask(&c2, r.addr(), b"four").as_deref(), Some(&b"four"[..]));
        // A slow link: 20 datagrams of 1000 bytes at 40 kB/s take about half a second.
        r.set_rate(40_000);
        let t = std::time::Instant::now();
        for _ in 0..20 {
            assert!(ask(&c, r.addr(), &[7u8; 1000]).is_some());
        }
        let d = t.elapsed();
        assert!(d >= Duration::from_millis(400), "{d:?}");
        drop(r);
        stop.store(true, Ordering::Relaxed);
    }
}
