//! Bringing an interface up over rtnetlink, with no `unsafe` and no `ip` binary.
//!
//! An `ioctl(SIOCSIFFLAGS)` would need `unsafe` (nix only generates unsafe ioctl
//! wrappers); a netlink socket is an ordinary socket, and the one message needed here is
//! 32 bytes built by hand: `struct nlmsghdr` followed by `struct ifinfomsg`
//! (`linux/netlink.h`, `linux/rtnetlink.h`), in the machine's byte order.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// `RTM_NEWLINK` (`linux/rtnetlink.h`): change a link's attributes.
const RTM_NEWLINK: u16 = 16;
/// `NLMSG_ERROR` (`linux/netlink.h`): the kernel's answer; error 0 is an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST | NLM_F_ACK`.
const FLAGS: u16 = 0x1 | 0x4;
/// `IFF_UP` (`linux/if.h`).
const IFF_UP: u32 = 0x1;
/// `sizeof(struct nlmsghdr)` + `sizeof(struct ifinfomsg)`.
const MESSAGE_LEN: usize = 16 + 16;

fn request(ifindex: i32, seq: u32) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }
    m[0..4].copy_from_slice(&(MESSAGE_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&FLAGS.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // pid 0: the kernel assigns the port.
    // struct ifinfomsg { u8 family (AF_UNSPEC); u8 pad; u16 type; i32 index; u32 flags;
    //                    u32 change; }
    m[20..24].copy_from_slice(&ifindex.to_ne_bytes());
    m[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    m[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    m
}

/// The errno in an `NLMSG_ERROR` answer (0 for an acknowledgement), or `None` if the
/// answer is something else.
fn answer_error(buf: &[u8]) -> Option<i32> {
    let ty = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    if ty != NLMSG_ERROR {
        return None;
    }
    // struct nlmsgerr { int error; struct nlmsghdr msg; } follows the header.
    Some(i32::from_ne_bytes(buf.get(16..20)?.try_into().ok()?))
}

/// Sets `IFF_UP` on the interface `name` of the calling process's network namespace.
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    let index = nix::net::if_::if_nametoindex(name)
        .map_err(|e| io::Error::other(format!("no interface {name}: {e}")))?;
    let index = i32::try_from(index).map_err(io::Error::other)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| io::Error::other(format!("open a netlink socket: {e}")))?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        fd.as_raw_fd(),
        &request(index, 1),
        &kernel,
        MsgFlags::empty(),
    )
    .map_err(|e| io::Error::other(format!("send RTM_NEWLINK for {name}: {e}")))?;
    let mut buf = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| io::Error::other(format!("read the kernel's answer for {name}: {e}")))?;
    match answer_error(&buf[..n]) {
        Some(0) => Ok(()),
        Some(e) => {
            let e = io::Error::from_raw_os_error(-e);
            Err(io::Error::new(e.kind(), format!("bring {name} up: {e}")))
        }
        None => Err(io::Error::other(format!(
            "bring {name} up: unexpected netlink answer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_ifinfomsg_setting_iff_up() {
        let m = request(1, 7);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().expect("4")), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().expect("2")), 16);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().expect("2")), 5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().expect("4")), 7);
        assert_eq!(m[16], 0, "AF_UNSPEC");
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().expect("4")), 1);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().expect("4")), 1);
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().expect("4")), 1);
    }

    #[test]
    fn answers_are_read_as_errno() {
        let mut ack = [0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(answer_error(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(answer_error(&ack), Some(-1));
        assert_eq!(answer_error(&[0u8; 8]), None);
    }
}
