//! The channel that carries an accepted client from the supervisor to a spare child (issue 15:
//! client spares, decision 160): one `SOCK_SEQPACKET` socket pair per spare, made when the
//! spare is started (only when the host has listeners). The spare keeps one end, as its
//! startup's client socket; the supervisor keeps the other until it hands that spare a client or
//! the spare is gone.
//!
//! Runs in: the supervisor ([`send`], never blocking) and spare children ([`recv`], never
//! blocking either: the message is queued before the spare is woken). One message per hand-off:
//! the client's fd as `SCM_RIGHTS`, and `listener (u32, little-endian) | local | NUL | peer`.
//! A spare that dies with the message unread closes its end, and the kernel closes the client
//! socket in flight with it: that client alone is lost.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// Largest message a spare accepts: the listener index and two addresses (a Unix socket path
/// is at most 108 bytes, a TCP address far less).
const MAX_MESSAGE: usize = 1024;

/// What a spare received: the listener, the client's socket and its addresses.
#[derive(Debug)]
pub struct Handed {
    pub listener: u32,
    pub fd: OwnedFd,
    pub local: String,
    pub peer: String,
}

/// A new channel: (the supervisor's end, the spare's end), both close-on-exec (the spare's end
/// reaches an executed spare as its client fd, which the spawn sets up without the flag).
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?)
}

/// Queues `client` and its addresses for the spare at the other end of `chan`. Fails rather
/// than blocks (a full or closed channel): the caller then starts a fresh child for the client.
pub fn send(chan: &OwnedFd, listener: u32, local: &str, peer: &str, client: &OwnedFd) -> std::io::Result<()> {
    let mut msg = listener.to_le_bytes().to_vec();
    msg.extend_from_slice(local.as_bytes());
    msg.push(0);
    msg.extend_from_slice(peer.as_bytes());
    if msg.len() > MAX_MESSAGE {
        return Err(std::io::Error::other("the client's addresses are too long for a spare"));
    }
    let fds = [client.as_raw_fd()];
    let n = sendmsg::<()>(
        chan.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // A sequenced packet goes whole or not at all.
    if n != msg.len() {
        return Err(std::io::Error::other("short send to a spare"));
    }
    Ok(())
}

/// Takes the client queued on `chan`, or says why there is none. Every fd the message carried
/// is owned (and so closed) here, whatever else is wrong with it.
pub fn recv(chan: &OwnedFd) -> Result<Handed, String> {
    let mut buf = [0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        chan.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("no client queued for this spare: {e}"))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: the kernel just installed these fds in this process for this message;
                // nothing else owns them.
                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let n = msg.bytes;
    if truncated || fds.len() != 1 || n < 4 {
        return Err(format!(
            "malformed hand-off: {n} bytes, {} fds{}",
            fds.len(),
            if truncated { ", truncated" } else { "" }
        ));
    }
    let listener = u32::from_le_bytes(buf[..4].try_into().expect("four bytes"));
    let text = String::from_utf8_lossy(&buf[4..n]);
    let (local, peer) = text.split_once('\0').unwrap_or((&text, ""));
    Ok(Handed {
        listener,
        fd: fds.pop().expect("one fd"),
        local: local.to_owned(),
        peer: peer.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The client's socket, its listener and its addresses arrive as sent, and the received fd
    /// is the same socket (what one end writes the other reads).
    #[test]
    fn a_client_crosses_the_channel() {
        let (sup, spare) = pair().unwrap();
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        send(&sup, 3, "/run/kv.sock", "peer", &OwnedFd::from(server)).unwrap();
        let h = recv(&spare).unwrap();
        assert_eq!(
            (h.listener, h.local.as_str(), h.peer.as_str()),
            (3, "/run/kv.sock", "peer")
        );
        let mut s = std::os::unix::net::UnixStream::from(h.fd);
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        (&client).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    /// Nothing queued is an error at once, never a wait; so is a message without a socket.
    #[test]
    fn an_empty_or_fdless_channel_is_refused() {
        let (sup, spare) = pair().unwrap();
        assert!(recv(&spare).unwrap_err().contains("no client queued"));
        nix::sys::socket::send(sup.as_raw_fd(), b"\x01\0\0\0x", MsgFlags::empty()).unwrap();
        assert!(recv(&spare).unwrap_err().contains("0 fds"));
    }

    /// A spare that dies with the message unread takes the client socket with it: the client
    /// sees the end of its connection, and nothing of it stays open in the supervisor.
    #[test]
    fn a_dead_spare_closes_the_client_in_flight() {
        let (sup, spare) = pair().unwrap();
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        send(&sup, 0, "", "", &OwnedFd::from(server)).unwrap();
        drop(spare);
        drop(sup);
        let mut b = [0u8; 1];
        assert_eq!((&client).read(&mut b).unwrap(), 0);
    }
}
