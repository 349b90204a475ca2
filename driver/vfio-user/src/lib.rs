//! A small, robust implementation of the vfio-user protocol (QEMU's
//! `docs/interop/vfio-user.rst`, the protocol libvfio-user and QEMU speak)
//! for the hitless card: the simulated card process is the [`Server`], the
//! host driver is the [`Client`].
//!
//! We implement the protocol ourselves rather than use the `vfio-user`
//! crate because that crate panics or loses message framing on malformed
//! input (see `shared/DESIGN.md`, "Simulation"). The card process must
//! survive any byte sequence on its socket and keep serving. The server is
//! tested against clients we did not write: rust-vmm's `vfio_user` client
//! and a client script written from the specification
//! (`tests/interop.rs`, `tests/spec_client.py`).
//!
//! One error type, [`Error`], serves every part of the crate. The crate has
//! no `unsafe` code (`forbid(unsafe_code)`): DMA memory is copied with
//! `pread`/`pwrite`, never mapped.
//!
//! # The subset implemented
//!
//! Protocol version 0.0 (the specification's major 0; a client proposing
//! a higher minor is answered with minor 0), one Unix stream socket per
//! client, file descriptors over `SCM_RIGHTS`:
//!
//! | command | server behaviour |
//! |---|---|
//! | `VERSION` (1) | must come first; major 0 (else `ENOTSUP`); JSON capabilities optional, NUL terminator optional. The reply has the lower minor and only capabilities the client proposed, each no larger than proposed ([`Caps::negotiate`]: `max_msg_fds`, `max_data_xfer_size`, `max_dma_maps` the smaller value, `pgsizes` the common bits); unknown capabilities (`migration`, `twin_socket`, `write_multiple`) are not echoed. The agreed values (the specification's defaults for absent ones) are enforced for the connection |
//! | `DMA_MAP` (2) | exactly one fd, a regular file (a memfd, a shared-memory or hugetlbfs file), sealed or not; page-aligned iova/offset/size; size > 0; no overlap (`EEXIST`); the file large enough at map time. Seals are required only with [`Limits::require_dma_seals`] (off by default) |
//! | `DMA_UNMAP` (3) | exact match of a live mapping (`ENOENT` otherwise), or `VFIO_DMA_UNMAP_FLAG_ALL` |
//! | `DEVICE_GET_INFO` (4), `DEVICE_GET_REGION_INFO` (5), `DEVICE_GET_IRQ_INFO` (7) | from the device's [`DeviceDescription`]; for a PCI device (with [`DeviceDescription::pci`]) at least the 9 VFIO-PCI regions and 5 IRQ indexes, absent ones of size/count 0; no region capabilities, no mmap-able regions |
//! | `DEVICE_SET_IRQS` (8) | `DATA_EVENTFD\|ACTION_TRIGGER` with one fd per vector (or none, to deassign), and `DATA_NONE\|ACTION_TRIGGER` with count 0 (disable the index) |
//! | `REGION_READ` (9), `REGION_WRITE` (10) | power-of-two sizes up to the agreed `max_data_xfer_size`, naturally aligned up to 8 bytes, inside the region. Region 7 (configuration space) and the MSI-X BAR of a PCI device are emulated by the server ([`config`]); the rest go to the [`Device`] |
//! | `DEVICE_RESET` (13) | forwarded to [`Device::reset`]; the emulated configuration space returns to its power-on state |
//! | anything else | its declared payload is skipped exactly and it is answered `ENOSYS` |
//!
//! Not implemented: in-band DMA (`DMA_READ`/`DMA_WRITE`; DMA memory is
//! always fd-backed), mmap-able regions and sparse-mmap capabilities,
//! `GET_REGION_IO_FDS`, `REGION_WRITE_MULTI`, migration and device features,
//! twin-socket mode, IRQ masking, PCI extended configuration space, INTx
//! and MSI (only MSI-X).
//!
//! The hitless card's description is in [`card`]: BAR0 (region 0, 8 KiB,
//! read/write), one MSI-X vector (IRQ index 2) signalled through an
//! eventfd, PCI identity [`card::PCI_IDENTITY`] (vendor 0x1234, a
//! documented placeholder; class 0x0580, other memory controller); the
//! server adds configuration space (region 7) and the MSI-X table BAR
//! (region 1).
//!
//! # DMA memory
//!
//! The client owns DMA memory and may shrink the file at any time (QEMU
//! passes whatever backs guest memory, which need not be sealed). A server that `mmap`ed it would
//! take `SIGBUS` on the next access to a page past the new end. This crate
//! never maps client memory: [`DmaSpace`] and [`FdMemory`] copy with
//! `pread`/`pwrite`, so a shrunk file is an error for that DMA access
//! ([`Error::DmaFault`]) and the device goes on. A device that does map DMA
//! memory must check [`DmaRegion::sealed_against_shrinking`] (the simulated
//! card does), or the server can be told to require seals.
//!
//! # Limits
//!
//! [`Limits`] (server side, each lowered per connection to what the client
//! proposed at `VERSION`): messages above `max_data_xfer` + 32 bytes
//! (1 MiB + 32 by default) end the connection after an `EMSGSIZE` reply;
//! at most `max_fds` (8) descriptors per message; at most `max_dma_maps`
//! (64) mappings; once a message has started, the rest of it must arrive,
//! and its reply must be taken by the socket, within `message_timeout`
//! (2 s). The client caps replies at 1 MiB + 32 bytes and applies its
//! timeout to every call, connecting included.
//!
//! # Robustness rules
//!
//! Server:
//! - Input is never trusted: every field is range-checked with checked
//!   arithmetic before use, and the [`Device`] is only called with requests
//!   that fit its description (see the trait's documentation). No code path
//!   panics on input.
//! - Framing is kept exactly: a message is read as its 16-byte header plus
//!   exactly its declared payload, whatever the command. Requests that are
//!   well framed but wrong (unknown command, short or malformed payload,
//!   out-of-range access, bad DMA map, unexpected or excess descriptors)
//!   get an error reply and the connection goes on.
//! - Framing violations end the connection: a size below 16 or above the
//!   limit, end of file or a stall inside a message, a non-command message,
//!   a first message other than `VERSION`, or a failed negotiation. The
//!   server releases that client's DMA mappings and interrupt descriptors
//!   and goes back to accepting; a protocol error never stops a [`Server`].
//! - Descriptors beyond the limit are closed (the kernel closes those that
//!   do not fit the control buffer, we close the rest); descriptors on
//!   commands that take none are closed and the request refused.
//! - One client at a time: while one is attached, newcomers are accepted
//!   and immediately sent an error reply (msg id 0, command `VERSION`,
//!   errno `EBUSY`) and closed; [`Client::connect`] reports that as
//!   [`Error::Busy`].
//! - Sends use `MSG_NOSIGNAL`, so a vanished client never raises `SIGPIPE`.
//!
//! Client:
//! - It proposes version 0.0 and [`Client::proposed_caps`], and refuses a
//!   reply with another major, a higher minor, a capability it did not
//!   propose or one larger than proposed ([`Caps::check_reply`]).
//! - Every call is bounded by the client's timeout: a hung server gives
//!   [`Error::Timeout`], a dead one [`Error::Disconnected`], an error reply
//!   [`Error::Remote`] with its errno. Replies are matched by message id; a
//!   late reply to a timed-out call is skipped.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable
    )
)]

mod client;
pub mod config;
mod device;
mod error;
pub mod proto;
mod server;
mod wire;

pub use client::{Client, DmaBuffer, IrqEvent, ServerCaps, CLIENT_MAX_DATA_XFER};
pub use device::{
    card, Device, DeviceDescription, DmaMemory, DmaProt, DmaRegion, DmaSpace, FdMemory, IrqDesc,
    IrqFd, PciIdentity, RegionDesc,
};
pub use error::Error;
pub use proto::{Caps, DeviceInfo, IrqInfo, RegionInfo};
pub use server::{serve_connection, Limits, ServeEnd, Server, StopHandle};
pub use wire::MAX_FDS;

/// DMA page size: DMA map addresses, offsets and sizes are multiples of it
/// (the protocol's default `pgsizes`).
pub const DMA_PAGE_SIZE: u64 = 4096;
