//! Bulk throughput over loopback: our protocol (one and four streams, with and without
//! zstd) next to a bare quinn transfer with the same mutual TLS and transport settings,
//! and a plain TCP copy. Prints MB/s and CPU seconds per GB (both ends are in this
//! process, so CPU covers sender and receiver).
//!
//! `cargo bench -p walb-wire --bench throughput`; `WALB_BENCH_MB` sets the bytes per run
//! (default 1024), `WALB_BENCH_CHUNK_KB` the chunk size (default 1024).
//!
//! Fairness: the bare quinn transfers (one and four streams) use the same endpoint set-up
//! as [`Node`] (same socket buffers, endpoint and transport configuration, mutual TLS),
//! the same runtime and the same chunks; each walb line is compared with the bare figure
//! of the same number of streams. The bare sender writes the same `&[u8]` chunks walb's
//! `CallSender::chunk` takes (`write_all`); the bare receiver takes quinn's pieces in
//! batches without copying them (`read_chunks`), the best a bare application can do.
//!
//! Knobs for tuning (applied to walb and bare quinn alike): `WALB_BENCH_STREAM_WINDOW_KB`,
//! `WALB_BENCH_CONN_WINDOW_KB`, `WALB_BENCH_SEND_WINDOW_KB`, `WALB_BENCH_SOCKET_BUFFER_KB`,
//! `WALB_BENCH_GSO` (0 or 1). `WALB_BENCH_ONLY` picks cases by name, comma-separated:
//! `tcp`, `bare1`, `bare4`, `walb1`, `walb4`, `walb1z`, `walb4z`. `UDP drops` counts the
//! kernel's UDP receive-buffer errors during the run (Linux).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use walb_wire::msg::{MetaDiffDto, SnapDto, WdiffTransfer};
use walb_wire::tls::TlsState;
use walb_wire::{ClusterCa, IssueOptions, Node, NodeConfig, PeerId, Reply, Request, Role, Step};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system) from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// The kernel's UDP receive-buffer error count (Linux), or 0 when unknown.
fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The transport settings of every QUIC run, from the defaults and the tuning knobs.
fn wire_config() -> walb_wire::WireConfig {
    let mut w = walb_wire::WireConfig::default();
    let kb = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(k) = kb("WALB_BENCH_STREAM_WINDOW_KB") {
        w.stream_receive_window = (k << 10) as u32;
    }
    if let Some(k) = kb("WALB_BENCH_CONN_WINDOW_KB") {
        w.receive_window = (k << 10) as u32;
    }
    if let Some(k) = kb("WALB_BENCH_SEND_WINDOW_KB") {
        w.send_window = k << 10;
    }
    if let Some(k) = kb("WALB_BENCH_SOCKET_BUFFER_KB") {
        w.socket_buffer = (k << 10) as usize;
    }
    if let Some(g) = kb("WALB_BENCH_GSO") {
        w.gso = g != 0;
    }
    w
}

fn wanted(case: &str) -> bool {
    match std::env::var("WALB_BENCH_ONLY") {
        Ok(only) => only.split(',').any(|c| c.trim() == case),
        Err(_) => true,
    }
}

struct Measure {
    name: String,
    bytes: u64,
    wall: Duration,
    cpu: f64,
    drops: u64,
}

impl Measure {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }

    fn print(&self, reference: Option<f64>) {
        let ratio = reference
            .map(|r| format!("{:>6.2}x bare quinn", self.mbps() / r))
            .unwrap_or_default();
        println!(
            "{:<44} {:>9.1} MB/s {:>7.2} CPU s/GB {:>7} UDP drops {}",
            self.name,
            self.mbps(),
            self.cpu / (self.bytes as f64 / 1e9),
            self.drops,
            ratio
        );
    }
}

async fn timed<F, Fut>(name: &str, bytes: u64, f: F) -> Result<Measure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let drops0 = udp_rcvbuf_errors();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(300), f())
        .await
        .context("benchmark run timed out")??;
    Ok(Measure {
        name: name.to_owned(),
        bytes,
        wall: t0.elapsed(),
        cpu: cpu_seconds() - cpu0,
        drops: udp_rcvbuf_errors().saturating_sub(drops0),
    })
}

/// Data that compresses about 2-3x with zstd -1, like block-device writes.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            v.extend(std::iter::repeat_n(0u8, 512));
        } else {
            v.extend_from_slice(&x.to_le_bytes());
            v.extend_from_slice(&[(x >> 8) as u8 & 0x0f; 8]);
        }
    }
    v.truncate(len);
    v
}

struct Setup {
    ca: ClusterCa,
}

impl Setup {
    fn tls(&self, role: Role, id: &str) -> Result<Arc<TlsState>> {
        let issued = self
            .ca
            .issue(&PeerId::new(role, id)?, &IssueOptions::default())?;
        Ok(TlsState::from_der(
            vec![self.ca.cert_der()],
            issued.cert_chain()?,
            issued.key_der()?,
        )?)
    }
}

fn wdiff_request() -> Request {
    let s = SnapDto { gid_b: 0, gid_e: 0 };
    Request::WdiffTransfer(WdiffTransfer {
        vol: "bench".into(),
        uuid: [0; 16],
        // A volume of 1 TiB: the transport admits only sizes a volume can have.
        size_lb: 1 << 31,
        diff: MetaDiffDto {
            range: walb_wire::msg::DiffRange {
                snap_b: s,
                snap_e: s,
            },
            mergeable: false,
            comp_diff: false,
            timestamp_s: 0,
            size: 0,
        },
    })
}

async fn ours(
    setup: &Setup,
    total: usize,
    chunk: &[u8],
    streams: usize,
    zstd: Option<i32>,
) -> Result<Measure> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let mut cfg = NodeConfig::new(loopback, true);
    cfg.wire = wire_config();
    cfg.wire.zstd_level = zstd;
    let archive = Node::with_tls(cfg.clone(), setup.tls(Role::Archive, "a0")?)?;
    let addr = archive.local_addr()?;
    cfg.listen = false;
    let proxy = Node::with_tls(cfg, setup.tls(Role::Proxy, "p0")?)?;
    let server = archive.clone();
    tokio::spawn(async move {
        while let Some(mut inc) = server.accept().await {
            tokio::spawn(async move {
                if inc.call.reply(Reply::Accepted).await.is_err() {
                    return;
                }
                while let Ok(Some(_)) = inc.call.receiver.chunk().await {}
                let _ = inc.call.sender.step(Step::Ack).await;
                let _ = inc.call.sender.finish();
            });
        }
    });
    let peer = proxy.connect(addr).await?;
    let per_stream = total / streams / chunk.len();
    let name = format!(
        "walb, {streams} stream{}, {}",
        if streams > 1 { "s" } else { "" },
        match zstd {
            Some(l) => format!("zstd {l}"),
            None => "no compression".into(),
        }
    );
    let bytes = (per_stream * streams * chunk.len()) as u64;
    let m = timed(&name, bytes, || async {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let peer = peer.clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                let mut call = peer.call(wdiff_request()).await?;
                call.receiver.reply().await?;
                for _ in 0..per_stream {
                    call.sender.chunk(&chunk).await?;
                }
                call.sender.end_bulk().await?;
                call.receiver.step().await?;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
    .await?;
    proxy.close().await;
    archive.close().await;
    Ok(m)
}

/// A quinn endpoint set up like [`Node::with_tls`] does it.
fn bare_endpoint(
    wire: &walb_wire::WireConfig,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(wire.socket_buffer);
    let _ = sock.set_send_buffer_size(wire.socket_buffer);
    let runtime = quinn::default_runtime().context("no runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )?)
}

async fn bare_quinn(setup: &Setup, total: usize, chunk: &[u8], streams: usize) -> Result<Measure> {
    let wire = wire_config();
    let transport = wire.quinn_transport()?;
    let server_tls = setup.tls(Role::Archive, "a0")?;
    let client_tls = setup.tls(Role::Proxy, "p0")?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls.server_config()?)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(transport.clone());
    let server = bare_endpoint(&wire, Some(sc))?;
    let addr = server.local_addr()?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls.client_config()?)?;
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    cc.transport_config(transport);
    let client = bare_endpoint(&wire, None)?;
    let srv = server.clone();
    let receiver = tokio::spawn(async move {
        let conn = srv.accept().await.context("no connection")?.await?;
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (mut send, mut recv) = conn.accept_bi().await?;
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut bufs = vec![bytes::Bytes::new(); 64];
                while let Some(k) = recv.read_chunks(&mut bufs).await? {
                    n += bufs[..k].iter().map(|b| b.len() as u64).sum::<u64>();
                }
                send.write_all(b"k").await?;
                send.finish()?;
                anyhow::Ok(n)
            }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await??;
        }
        conn.closed().await;
        anyhow::Ok(n)
    });
    let conn = client.connect_with(cc, addr, "walb")?.await?;
    let per_stream = total / streams / chunk.len();
    let bytes = (per_stream * streams * chunk.len()) as u64;
    let name = format!(
        "bare quinn, {streams} stream{}, same mTLS",
        if streams > 1 { "s" } else { "" }
    );
    let m = timed(&name, bytes, || async {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let conn = conn.clone();
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                let (mut send, mut recv) = conn.open_bi().await?;
                for _ in 0..per_stream {
                    send.write_all(&chunk).await?;
                }
                send.finish()?;
                recv.read_to_end(16).await?;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
    .await?;
    conn.close(0u32.into(), b"done");
    let n = receiver.await??;
    anyhow::ensure!(n == bytes, "bare quinn received {n} of {bytes}");
    client.wait_idle().await;
    server.close(0u32.into(), b"done");
    Ok(m)
}

async fn tcp(total: usize, chunk: &[u8]) -> Result<Measure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                break;
            }
            n += r as u64;
        }
        anyhow::Ok(n)
    });
    let count = total / chunk.len();
    let bytes = (count * chunk.len()) as u64;
    let m = timed("plain TCP loopback copy", bytes, || async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        for _ in 0..count {
            s.write_all(chunk).await?;
        }
        s.shutdown().await?;
        let n = receiver.await??;
        anyhow::ensure!(n == bytes, "tcp received {n} of {bytes}");
        Ok(())
    })
    .await?;
    Ok(m)
}

fn main() -> Result<()> {
    let total = env_usize("WALB_BENCH_MB", 1024) << 20;
    let chunk_len = env_usize("WALB_BENCH_CHUNK_KB", 1024) << 10;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let setup = Setup {
            ca: ClusterCa::generate("bench", 1)?,
        };
        let chunk = payload(chunk_len);
        println!(
            "{} MiB per run, {} KiB chunks, loopback, 2 tokio workers",
            total >> 20,
            chunk_len >> 10
        );
        if wanted("tcp") {
            tcp(total, &chunk).await?.print(None);
        }
        let mut bare = [None, None];
        for (i, streams) in [1, 4].into_iter().enumerate() {
            if wanted(&format!("bare{streams}")) {
                let m = bare_quinn(&setup, total, &chunk, streams).await?;
                m.print(None);
                bare[i] = Some(m.mbps());
            }
        }
        for (streams, zstd) in [(1, None), (4, None), (1, Some(1)), (4, Some(1))] {
            let case = format!("walb{streams}{}", if zstd.is_some() { "z" } else { "" });
            if !wanted(&case) {
                continue;
            }
            let reference = if streams == 1 { bare[0] } else { bare[1] };
            ours(&setup, total, &chunk, streams, zstd)
                .await?
                .print(reference);
        }
        anyhow::Ok(())
    })
}
