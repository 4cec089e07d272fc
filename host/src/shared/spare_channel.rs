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

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

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

/// Why a client was not handed over.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was queued (a full or closed channel, addresses too long): the spare is as it was.
    NotQueued(std::io::Error),
    /// The kernel took fewer bytes (the first field) than the message has (the second): part of
    /// it may be queued, so the spare can no longer be trusted to find a client's message whole.
    Partial(usize, usize),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotQueued(e) => write!(f, "{e}"),
            SendError::Partial(n, len) => write!(f, "short send to a spare: {n} of {len} bytes"),
        }
    }
}

/// Queues `client` and its addresses for the spare at the other end of `chan`. Fails rather
/// than blocks (a full or closed channel): the caller then starts a fresh child for the client.
pub fn send(chan: &OwnedFd, listener: u32, local: &str, peer: &str, client: &OwnedFd) -> Result<(), SendError> {
    let mut msg = listener.to_le_bytes().to_vec();
    msg.extend_from_slice(local.as_bytes());
    msg.push(0);
    msg.extend_from_slice(peer.as_bytes());
    if msg.len() > MAX_MESSAGE {
        return Err(SendError::NotQueued(std::io::Error::other(
            "the client's addresses are too long for a spare",
        )));
    }
    let fds = [client.as_raw_fd()];
    let n = sendmsg::<()>(
        chan.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| SendError::NotQueued(e.into()))?;
    // A sequenced packet goes whole or not at all; should the kernel ever say otherwise, what
    // it took may be queued.
    if n != msg.len() {
        return Err(SendError::Partial(n, msg.len()));
    }
    Ok(())
}

/// Takes the client queued on `chan`, or says why there is none. Every fd the message carried
/// is owned (and so closed) here, whatever else is wrong with it, a truncated control part
/// included (the kernel installs the fds that fit and flags `MSG_CTRUNC`).
pub fn recv(chan: &OwnedFd) -> Result<Handed, String> {
    let mut buf = [0u8; MAX_MESSAGE];
    // Room for one fd's control message, aligned for `cmsghdr` as the kernel writes it.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `msghdr` is plain data; all-zero is a valid empty header, filled in below.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    hdr.msg_controllen = (unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize)
        .min(std::mem::size_of_val(&control)) as _;
    // SAFETY: `hdr` points at `iov` (over `buf`) and `control`, which outlive the call and are as
    // long as their lengths say; the kernel writes into them only.
    let n = unsafe { libc::recvmsg(chan.as_raw_fd(), &mut hdr, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!(
            "no client queued for this spare: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut fds = take_fds(&hdr);
    let truncated = hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    let n = n as usize;
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

/// Every fd the `SCM_RIGHTS` messages in `hdr`'s control part carry, owned: the kernel installed
/// each in this process for this message, even when it flagged the part as truncated.
fn take_fds(hdr: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `hdr` was just filled by `recvmsg`: its control pointer and length describe the
    // control messages the kernel wrote (none if the length is 0), which the CMSG macros walk
    // without leaving that range.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !c.is_null() {
        // SAFETY: `c` is a header CMSG_FIRSTHDR/CMSG_NXTHDR returned, inside the control buffer;
        // the buffer is u64-aligned, as the kernel lays the headers out.
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes a size.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: CMSG_DATA points at the `len - head` bytes of this message's data, within
            // the buffer the kernel wrote.
            let data = unsafe { libc::CMSG_DATA(c) };
            // Never past the control part the kernel reported, whatever the length says.
            let controllen: usize = hdr.msg_controllen as _;
            let end = hdr.msg_control as usize + controllen;
            let count = len.saturating_sub(head).min(end.saturating_sub(data as usize)) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: `i` counts whole fds within the message's data; the data need not be
                // aligned for an int, hence the unaligned read.
                let fd = unsafe {
                    data.add(i * std::mem::size_of::<RawFd>())
                        .cast::<RawFd>()
                        .read_unaligned()
                };
                if fd >= 0 {
                    // SAFETY: the kernel installed this fd in this process for this message;
                    // nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR: `c` is within the buffer `hdr` describes.
        c = unsafe { libc::CMSG_NXTHDR(hdr, c) };
    }
    fds
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

    /// A message carrying more fds than a hand-off has room for is refused, and each fd the
    /// kernel installed for it is closed: every client socket sent sees the end of its
    /// connection.
    #[test]
    fn a_truncated_hand_off_leaves_no_fd_open() {
        let (sup, spare) = pair().unwrap();
        let pairs: Vec<_> = (0..3)
            .map(|_| std::os::unix::net::UnixStream::pair().unwrap())
            .collect();
        let fds: Vec<RawFd> = pairs.iter().map(|(_, server)| server.as_raw_fd()).collect();
        sendmsg::<()>(
            sup.as_raw_fd(),
            &[IoSlice::new(b"\0\0\0\0\0")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .unwrap();
        let clients: Vec<_> = pairs.into_iter().map(|(client, _)| client).collect();
        let e = recv(&spare).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        for (i, client) in clients.iter().enumerate() {
            client.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            assert_eq!(
                (&*client).read(&mut b).map_err(|e| e.kind()),
                Ok(0),
                "client {i} still open somewhere"
            );
        }
    }
}
