//! A bus connection whose incoming messages cost at most what the agent chose to accept.
//!
//! zbus allocates a message's whole length, as its header announces it, before reading
//! it (up to the specification's 128 MiB; the system bus lets 32 MiB through by default,
//! dbus-broker up to 128 MiB), and keeps up to 64 read ahead of the one being served. One
//! local user's `Properties.Get` with a 30 MiB name would so cost the agent 30 MiB per
//! message read, and a few of them its `MemoryMax=`. systemd's sd-bus and dbus-broker
//! refuse only past 128 MiB too; neither is a daemon a local user may talk to at will
//! with a 64 MiB budget.
//!
//! So the agent reads the bus socket itself. The 16-byte primary header of each message
//! says its length; a message within [`MAX_MESSAGE`] is handed to zbus's own reading, as
//! if nothing had looked at it; a longer one is read off the socket through a fixed
//! buffer and dropped, its sender's call left unanswered (no reply can be built without
//! reading the header fields, which is what a long path makes long), and said in the
//! journal once per quiet period with how many there were. Nothing the agent receives
//! legitimately comes near the limit: calls carry a worker id or a property name,
//! systemd's replies a few properties.
//!
//! Memory is then bounded by the queue: at most 64 messages read ahead and the one being
//! served, each at most [`MAX_MESSAGE`].

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use zbus::connection::socket::{ReadHalf, Socket, Split, WriteHalf};

/// What `ReadHalf::recvmsg` returns: bytes read, and file descriptors (never any here).
type RecvmsgResult = io::Result<(usize, Vec<std::os::fd::OwnedFd>)>;

/// The largest message the agent reads: 128 KiB, a thousand times a real call.
pub const MAX_MESSAGE: usize = 128 << 10;

/// The primary header: endianness, type, flags, version, body length, serial, and the
/// length of the header fields array.
const PRIMARY_HEADER: usize = 16;

/// What one refused message is read through.
const SCRATCH: usize = 64 << 10;

/// How often a refusal is said in the journal at most.
const SAID_EVERY: Duration = Duration::from_secs(600);

/// Messages refused so far, all connections together (for the log and the tests).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many messages have been refused for their size since the agent started.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Where a bus address leads, when the agent can read the socket itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:path=…`.
    Path(PathBuf),
    /// `unix:abstract=…`.
    Abstract(Vec<u8>),
}

/// The first `unix:path=` or `unix:abstract=` entry of a D-Bus address list (entries
/// separated by `;`, values percent-encoded); `None` when it has neither (a TCP bus,
/// say, which the agent never uses).
pub fn endpoint(address: &str) -> Option<Endpoint> {
    for entry in address.split(';') {
        let Some(pairs) = entry.strip_prefix("unix:") else {
            continue;
        };
        for pair in pairs.split(',') {
            if let Some(path) = pair.strip_prefix("path=") {
                return Some(Endpoint::Path(PathBuf::from(
                    String::from_utf8_lossy(&unescape(path)?).into_owned(),
                )));
            }
            if let Some(name) = pair.strip_prefix("abstract=") {
                return Some(Endpoint::Abstract(unescape(name)?));
            }
        }
    }
    None
}

/// A D-Bus address value with its `%XX` escapes undone.
fn unescape(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The address of the system or session bus, as libdbus finds it.
pub fn bus_address(system: bool) -> Option<String> {
    if system {
        Some(
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .unwrap_or_else(|_| "unix:path=/run/dbus/system_bus_socket".to_owned()),
        )
    } else {
        std::env::var("DBUS_SESSION_BUS_ADDRESS").ok()
    }
}

/// Connects to `endpoint`, for `zbus::connection::Builder::socket`.
pub async fn connect(endpoint: &Endpoint) -> io::Result<Bounded> {
    let stream = match endpoint {
        Endpoint::Path(path) => tokio::net::UnixStream::connect(path).await?,
        Endpoint::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            let stream = std::os::unix::net::UnixStream::connect_addr(&address)?;
            stream.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(stream)?
        }
    };
    Ok(Bounded(stream))
}

/// A bus socket whose read half refuses long messages (see the module docs).
#[derive(Debug)]
pub struct Bounded(tokio::net::UnixStream);

impl Socket for Bounded {
    type ReadHalf = Reader;
    type WriteHalf = Writer;

    fn split(self) -> Split<Reader, Writer> {
        let (read, write) = self.0.into_split();
        Split::new(
            Reader {
                raw: Raw(read),
                said_at: None,
                unsaid: 0,
            },
            Writer(write),
        )
    }
}

/// The socket's bytes, for the handshake and for zbus's own reading of a message.
#[derive(Debug)]
pub struct Raw(OwnedReadHalf);

#[zbus::export::async_trait::async_trait]
impl ReadHalf for Raw {
    async fn recvmsg(&mut self, buffer: &mut [u8]) -> RecvmsgResult {
        // Neither half says it can pass file descriptors, so the bus sends none.
        let read = self.0.read(buffer).await?;
        Ok((read, vec![]))
    }
}

/// The read half: looks at each message's length before anything is allocated for it.
#[derive(Debug)]
pub struct Reader {
    raw: Raw,
    /// When a refusal was last said, and how many since went unsaid.
    said_at: Option<Instant>,
    unsaid: u64,
}

impl Reader {
    /// Reads `buffer` whole, from what the handshake read ahead first.
    async fn read_exact(&mut self, buffer: &mut [u8], ahead: &mut Vec<u8>) -> io::Result<()> {
        let from_ahead = buffer.len().min(ahead.len());
        buffer[..from_ahead].copy_from_slice(&ahead[..from_ahead]);
        ahead.drain(..from_ahead);
        let mut filled = from_ahead;
        while filled < buffer.len() {
            let (read, _) = self.raw.recvmsg(&mut buffer[filled..]).await?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += read;
        }
        Ok(())
    }

    /// Reads `length` bytes off the socket and forgets them.
    async fn discard(&mut self, mut length: usize, ahead: &mut Vec<u8>) -> io::Result<()> {
        let from_ahead = length.min(ahead.len());
        ahead.drain(..from_ahead);
        length -= from_ahead;
        let mut scratch = vec![0u8; SCRATCH.min(length)];
        while length > 0 {
            let want = length.min(scratch.len());
            let (read, _) = self.raw.recvmsg(&mut scratch[..want]).await?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            length -= read;
        }
        Ok(())
    }

    /// Says a refusal, at most once per [`SAID_EVERY`] with the count of those unsaid.
    fn say_refused(&mut self, length: usize, serial: u32) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        self.unsaid += 1;
        let now = Instant::now();
        if self
            .said_at
            .is_some_and(|at| now.duration_since(at) < SAID_EVERY)
        {
            return;
        }
        tracing::warn!(
            refused = self.unsaid,
            "refused a D-Bus message of {length} bytes (serial {serial}), over the {MAX_MESSAGE}-byte \
             limit: read off the socket and dropped unanswered ({} refused since the last such line)",
            self.unsaid
        );
        self.said_at = Some(now);
        self.unsaid = 0;
    }
}

#[zbus::export::async_trait::async_trait]
impl ReadHalf for Reader {
    async fn receive_message(
        &mut self,
        seq: u64,
        already_received_bytes: &mut Vec<u8>,
        already_received_fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> zbus::Result<zbus::Message> {
        loop {
            let mut header = [0u8; PRIMARY_HEADER];
            self.read_exact(&mut header, already_received_bytes).await?;
            let (length, serial) = message_length(&header)?;
            if length <= MAX_MESSAGE {
                // zbus reads it as it would have: the header goes back in front.
                already_received_bytes.splice(0..0, header);
                return self
                    .raw
                    .receive_message(seq, already_received_bytes, already_received_fds)
                    .await;
            }
            self.discard(length - PRIMARY_HEADER, already_received_bytes)
                .await?;
            self.say_refused(length, serial);
        }
    }

    async fn recvmsg(&mut self, buffer: &mut [u8]) -> RecvmsgResult {
        self.raw.recvmsg(buffer).await
    }
}

/// A message's whole length and serial from its primary header, as the D-Bus
/// specification lays it out: the fields array's length at 12, padded to 8, then the
/// body, whose length is at 4. An endianness mark other than `l` or `B` is an error:
/// the stream cannot be followed past it.
fn message_length(header: &[u8; PRIMARY_HEADER]) -> io::Result<(usize, u32)> {
    let word = |at: usize| -> [u8; 4] { header[at..at + 4].try_into().expect("4 bytes") };
    let read: fn([u8; 4]) -> u32 = match header[0] {
        b'l' => u32::from_le_bytes,
        b'B' => u32::from_be_bytes,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a D-Bus message: endianness mark {other:#04x}"),
            ));
        }
    };
    let body = read(word(4)) as usize;
    let fields = read(word(12)) as usize;
    let fields_end = (PRIMARY_HEADER + fields).next_multiple_of(8);
    Ok((fields_end.saturating_add(body), read(word(8))))
}

/// The write half, as it comes.
#[derive(Debug)]
pub struct Writer(OwnedWriteHalf);

#[zbus::export::async_trait::async_trait]
impl WriteHalf for Writer {
    async fn sendmsg(
        &mut self,
        buffer: &[u8],
        _fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<usize> {
        self.0.write(buffer).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lead_to_a_path_or_an_abstract_name() {
        assert_eq!(
            endpoint("unix:path=/run/dbus/system_bus_socket"),
            Some(Endpoint::Path("/run/dbus/system_bus_socket".into()))
        );
        assert_eq!(
            endpoint("tcp:host=x,port=1;unix:abstract=/tmp/dbus-AbC%2c1,guid=0123"),
            Some(Endpoint::Abstract(b"/tmp/dbus-AbC,1".to_vec()))
        );
        assert_eq!(endpoint("tcp:host=x,port=1"), None);
        assert_eq!(endpoint("unix:path=%zz"), None);
    }

    #[test]
    fn a_message_length_is_read_as_the_specification_lays_it_out() {
        let mut header = [0u8; PRIMARY_HEADER];
        header[0] = b'l';
        header[4..8].copy_from_slice(&30u32.to_le_bytes());
        header[8..12].copy_from_slice(&7u32.to_le_bytes());
        header[12..16].copy_from_slice(&(30u32 << 20).to_le_bytes());
        // 16 + 30 MiB of fields, padded to 8, then a 30-byte body.
        assert_eq!(
            message_length(&header).unwrap(),
            (((16 + (30 << 20)) as usize).next_multiple_of(8) + 30, 7)
        );
        header[0] = b'B';
        header[4..8].copy_from_slice(&1u32.to_be_bytes());
        header[12..16].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(message_length(&header).unwrap().0, 24 + 1);
        header[0] = b'x';
        assert!(message_length(&header).is_err());
    }
}
