//! Batched UDP on Linux: `recvmmsg` and `sendmmsg`, with UDP GSO (one system call and one
//! trip through the stack for a run of equal datagrams to one destination) and UDP GRO (the
//! kernel hands a run from one sender back as one buffer with its stride).
//!
//! These are plain non-blocking calls on the socket's descriptor; the tokio socket around it
//! waits for readiness (`async_io`, `try_io`).

use super::batch::{Outgoing, RecvBatch, SLOT_LEN};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Slots one `recvmmsg` fills (each up to 64 KiB, so 1 MiB of buffers per batch).
pub(super) const RECV_SLOTS: usize = 16;
/// Messages (GSO runs or single datagrams) per `sendmmsg`.
const SEND_MESSAGES: usize = 32;
/// Datagrams per `sendmmsg` call, over all its messages.
const SEND_DATAGRAMS: usize = 128;
/// Datagrams per GSO run: the kernel's `UDP_MAX_SEGMENTS` on every kernel with GSO.
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes per GSO run: the largest UDP payload over IPv6 (IPv4 allows 65,507).
const GSO_MAX_BYTES: usize = 65_000;

/// Whether sending with GSO has failed with "not supported here" (an old kernel, a device
/// without checksum offload); then every run goes out datagram by datagram. Process-wide:
/// the tokio socket has no room for per-socket state, and the cause is the machine.
static GSO_UNSUPPORTED: AtomicBool = AtomicBool::new(false);
/// Runs with segments of this size or larger were refused (segment above the path MTU:
/// a 4 KiB datagram over a 1,500-byte link); they go out one by one.
static GSO_SEGMENT_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Control-message space for one `int` (GSO segment size, GRO stride), aligned for
/// `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

fn control_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic.
    unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize }
}

fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: the option value is a valid int of the given length.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks the kernel to merge runs of datagrams per sender (UDP GRO, Linux 5.0).
pub(super) fn enable_gro(fd: RawFd) -> bool {
    set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// The sender's address in a `sockaddr_storage` the kernel filled.
fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `addr` as the kernel takes it.
fn to_storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The GRO stride in a received message's control data, if the kernel merged datagrams.
fn gro_stride(header: &libc::msghdr) -> Option<usize> {
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // the buffer `msg_control` points to; CMSG_FIRSTHDR/NXTHDR stay inside it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let value = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                return usize::try_from(value).ok().filter(|v| *v > 0);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// One non-blocking `recvmmsg` into the free slots of `batch`; returns datagrams received.
/// `WouldBlock` when nothing is queued.
pub(super) fn recv(fd: RawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.clear();
    let slots = batch.slots().min(RECV_SLOTS);
    // SAFETY: all-zero is valid for these plain C structs; pointers are set below.
    let mut names: [libc::sockaddr_storage; RECV_SLOTS] = unsafe { zeroed() };
    let mut iovecs: [libc::iovec; RECV_SLOTS] = unsafe { zeroed() };
    let mut controls = [Control([0; 64]); RECV_SLOTS];
    let mut headers: [libc::mmsghdr; RECV_SLOTS] = unsafe { zeroed() };
    let buf = batch.raw_slots();
    for i in 0..slots {
        iovecs[i] = libc::iovec {
            // SAFETY: slot i lies inside the buffer (slots * SLOT_LEN bytes).
            iov_base: unsafe { buf.as_mut_ptr().add(i * SLOT_LEN) }.cast(),
            iov_len: SLOT_LEN,
        };
        let h = &mut headers[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iovecs[i];
        h.msg_iovlen = 1;
        h.msg_control = controls[i].0.as_mut_ptr().cast();
        h.msg_controllen = control_space() as _;
    }
    // SAFETY: every header points at live buffers of the lengths it states.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            slots as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut count = 0;
    for (header, name) in headers.iter().zip(&names).take(got as usize) {
        let len = header.msg_len as usize;
        // A truncated slot cannot be split into its datagrams; a sender we cannot name
        // cannot be answered. Both are dropped, as a bad datagram is.
        if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        let Some(from) = from_storage(name) else {
            continue;
        };
        let stride = gro_stride(&header.msg_hdr).unwrap_or(len);
        batch.push(len, stride, from);
        count += len.div_ceil(stride.max(1)).max(1);
    }
    Ok(count)
}

/// How many datagrams from the front of `batch` go out as one GSO run: same destination,
/// same length, but the last may be shorter.
fn run_length<T: Outgoing>(batch: &[T], gso: bool) -> usize {
    let Some(first) = batch.first() else {
        return 0;
    };
    let size = first.payload().len();
    if !gso || size == 0 || size >= GSO_SEGMENT_LIMIT.load(Ordering::Relaxed) {
        return 1;
    }
    let (to, mut total, mut n) = (first.destination(), size, 1);
    for next in &batch[1..] {
        let len = next.payload().len();
        if n == GSO_MAX_SEGMENTS
            || next.destination() != to
            || len > size
            || len == 0
            || total + len > GSO_MAX_BYTES
        {
            break;
        }
        n += 1;
        total += len;
        if len < size {
            break;
        }
    }
    n
}

/// What one `sendmmsg` did: datagrams consumed from the front, and an error that made the
/// first of them be skipped.
pub(super) struct Sent {
    pub(super) datagrams: usize,
    pub(super) error: Option<io::Error>,
}

/// One non-blocking `sendmmsg` of the front of `batch`, in GSO runs where possible.
/// `WouldBlock` when the socket buffer is full.
pub(super) fn send<T: Outgoing>(fd: RawFd, batch: &[T]) -> io::Result<Sent> {
    let gso = !GSO_UNSUPPORTED.load(Ordering::Relaxed);
    // SAFETY: all-zero is valid for these plain C structs; pointers are set below.
    let mut names: [libc::sockaddr_storage; SEND_MESSAGES] = unsafe { zeroed() };
    let mut iovecs: [libc::iovec; SEND_DATAGRAMS] = unsafe { zeroed() };
    let mut controls = [Control([0; 64]); SEND_MESSAGES];
    let mut headers: [libc::mmsghdr; SEND_MESSAGES] = unsafe { zeroed() };
    // Per message: datagrams in it and the segment size if it is a GSO run.
    let mut runs = [(0usize, 0usize); SEND_MESSAGES];
    let (mut messages, mut used) = (0, 0);
    while messages < SEND_MESSAGES && used < batch.len() {
        // One iovec per datagram: the first `used` are taken.
        let rest = &batch[used..batch.len().min(SEND_DATAGRAMS)];
        if rest.is_empty() {
            break;
        }
        let n = run_length(rest, gso);
        let first_iov = used;
        for (k, datagram) in rest[..n].iter().enumerate() {
            let payload = datagram.payload();
            iovecs[first_iov + k] = libc::iovec {
                // The kernel only reads through it; the iovec type has no const variant.
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
        }
        let (storage, name_len) = to_storage(rest[0].destination());
        names[messages] = storage;
        let segment = rest[0].payload().len();
        let h = &mut headers[messages].msg_hdr;
        h.msg_name = (&mut names[messages] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = name_len;
        // SAFETY: first_iov + n <= SEND_DATAGRAMS, by the slice bound above.
        h.msg_iov = unsafe { iovecs.as_mut_ptr().add(first_iov) };
        h.msg_iovlen = n as _;
        if n > 1 {
            let control = &mut controls[messages];
            h.msg_control = control.0.as_mut_ptr().cast();
            h.msg_controllen = control_space() as _;
            // SAFETY: the control buffer holds CMSG_SPACE(int) bytes, aligned for cmsghdr.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(h);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                libc::CMSG_DATA(cmsg)
                    .cast::<u16>()
                    .write_unaligned(segment as u16);
                h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
            }
        }
        runs[messages] = (n, if n > 1 { segment } else { 0 });
        messages += 1;
        used += n;
    }
    if messages == 0 {
        return Ok(Sent {
            datagrams: 0,
            error: None,
        });
    }
    // SAFETY: every header points at live names, iovecs and control data.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr(),
            messages as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent > 0 {
        let datagrams = runs[..sent as usize].iter().map(|(n, _)| n).sum();
        return Ok(Sent {
            datagrams,
            error: None,
        });
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::WouldBlock => return Err(error),
        io::ErrorKind::Interrupted => {
            return Ok(Sent {
                datagrams: 0,
                error: None,
            })
        }
        _ => {}
    }
    let (n, segment) = runs[0];
    if segment > 0 {
        // The run was refused as a run: never try GSO again (no support) or not with
        // segments this large (above the path MTU); the caller resends it one by one.
        let refused_as_run = match error.raw_os_error() {
            Some(libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP) => {
                GSO_UNSUPPORTED.store(true, Ordering::Relaxed);
                true
            }
            Some(libc::EINVAL | libc::EMSGSIZE) => {
                GSO_SEGMENT_LIMIT.fetch_min(segment, Ordering::Relaxed);
                true
            }
            _ => false,
        };
        if refused_as_run {
            return Ok(Sent {
                datagrams: 0,
                error: None,
            });
        }
    }
    Ok(Sent {
        datagrams: n,
        error: Some(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn runs_stop_at_a_new_destination_or_a_longer_datagram() {
        let batch = vec![
            (to(1), vec![0u8; 100]),
            (to(1), vec![0u8; 100]),
            (to(1), vec![0u8; 60]),
            (to(1), vec![0u8; 100]),
        ];
        assert_eq!(run_length(&batch, true), 3, "a shorter datagram ends a run");
        assert_eq!(run_length(&batch[3..], true), 1);
        let mixed = vec![(to(1), vec![0u8; 100]), (to(2), vec![0u8; 100])];
        assert_eq!(run_length(&mixed, true), 1);
        let longer = vec![(to(1), vec![0u8; 50]), (to(1), vec![0u8; 100])];
        assert_eq!(run_length(&longer, true), 1);
        assert_eq!(run_length(&batch, false), 1);
    }

    #[test]
    fn runs_respect_the_size_limits() {
        let big: Vec<_> = (0..40).map(|_| (to(1), vec![0u8; 4166])).collect();
        assert_eq!(run_length(&big, true), GSO_MAX_BYTES / 4166);
        let small: Vec<_> = (0..100).map(|_| (to(1), vec![0u8; 10])).collect();
        assert_eq!(run_length(&small, true), GSO_MAX_SEGMENTS);
    }

    #[test]
    fn addresses_survive_the_round_trip() {
        for addr in [
            to(4242),
            "[::1]:9".parse().unwrap(),
            "[fe80::1%3]:77".parse().unwrap(),
        ] {
            let (storage, _) = to_storage(addr);
            assert_eq!(from_storage(&storage), Some(addr));
        }
    }
}
