//! Wire format: the message header, command numbers, flag bits, errno
//! values and the fixed-layout payload structures of the subset we speak.
//!
//! Everything here is pure data: encoders build byte vectors, decoders take
//! byte slices and return `None` when the input is too short. Every
//! fixed-layout structure is declared once as a field list
//! (`wire_struct!`), which derives its size, encoder and decoder. Nothing in
//! this module can panic on any input.
//!
//! All integers are in host byte order, as the specification requires
//! ("all data is in the endianness of the host system").

use crate::error::Error;

/// Size of the message header that precedes every message.
pub const HEADER_SIZE: usize = 16;

/// Protocol major version we implement: 0, as in the specification and its
/// implementations (QEMU's client, libvfio-user).
pub const VERSION_MAJOR: u16 = 0;
/// Highest protocol minor version we implement. Negotiation settles on the
/// lower of this and the peer's (a peer supports every minor below its own).
pub const VERSION_MINOR: u16 = 0;

/// Command numbers (`VFIO_USER_*`), from the specification's command table.
pub mod cmd {
    /// `VFIO_USER_VERSION`: negotiation; must be the first message.
    pub const VERSION: u16 = 1;
    /// `VFIO_USER_DMA_MAP`: make client memory (an fd) available for DMA.
    pub const DMA_MAP: u16 = 2;
    /// `VFIO_USER_DMA_UNMAP`: withdraw a mapping made by `DMA_MAP`.
    pub const DMA_UNMAP: u16 = 3;
    /// `VFIO_USER_DEVICE_GET_INFO`.
    pub const DEVICE_GET_INFO: u16 = 4;
    /// `VFIO_USER_DEVICE_GET_REGION_INFO`.
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    /// `VFIO_USER_DEVICE_GET_REGION_IO_FDS` (not implemented: `ENOSYS`).
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    /// `VFIO_USER_DEVICE_GET_IRQ_INFO`.
    pub const DEVICE_GET_IRQ_INFO: u16 = 7;
    /// `VFIO_USER_DEVICE_SET_IRQS`.
    pub const DEVICE_SET_IRQS: u16 = 8;
    /// `VFIO_USER_REGION_READ`.
    pub const REGION_READ: u16 = 9;
    /// `VFIO_USER_REGION_WRITE`.
    pub const REGION_WRITE: u16 = 10;
    /// `VFIO_USER_DMA_READ` (server to client; never sent by us).
    pub const DMA_READ: u16 = 11;
    /// `VFIO_USER_DMA_WRITE` (server to client; never sent by us).
    pub const DMA_WRITE: u16 = 12;
    /// `VFIO_USER_DEVICE_RESET`.
    pub const DEVICE_RESET: u16 = 13;
}

/// Header flag bits.
pub mod flags {
    /// Mask of the message type field (bits 0-3).
    pub const TYPE_MASK: u32 = 0xf;
    /// Type: command.
    pub const TYPE_COMMAND: u32 = 0;
    /// Type: reply.
    pub const TYPE_REPLY: u32 = 1;
    /// The sender of a command wants no reply.
    pub const NO_REPLY: u32 = 1 << 4;
    /// The reply reports an error; the header's error field holds an errno.
    pub const ERROR: u32 = 1 << 5;
}

/// The errno values we put in error replies (Linux numbering, which is what
/// the protocol carries; a unit test checks them against `rustix`).
pub mod errno {
    /// Operation not permitted (DMA fd without the required seals).
    pub const EPERM: u32 = 1;
    /// No such mapping (DMA unmap of an unknown range).
    pub const ENOENT: u32 = 2;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Bad address.
    pub const EFAULT: u32 = 14;
    /// Device busy: a second client while one is attached.
    pub const EBUSY: u32 = 16;
    /// Mapping overlaps an existing one.
    pub const EEXIST: u32 = 17;
    /// Invalid argument: any malformed or out-of-range request.
    pub const EINVAL: u32 = 22;
    /// Too many DMA mappings.
    pub const ENOSPC: u32 = 28;
    /// Unknown command.
    pub const ENOSYS: u32 = 38;
    /// Message larger than the limit.
    pub const EMSGSIZE: u32 = 90;
    /// Operation not supported (e.g. fd-less DMA maps, IRQ masking).
    pub const ENOTSUP: u32 = 95;
}

/// `VFIO_DEVICE_FLAGS_*` (DEVICE_GET_INFO).
pub mod device_flags {
    /// The device supports `VFIO_USER_DEVICE_RESET`.
    pub const RESET: u32 = 1 << 0;
    /// The device is a PCI device.
    pub const PCI: u32 = 1 << 1;
}

/// `VFIO_REGION_INFO_FLAG_*` (DEVICE_GET_REGION_INFO).
pub mod region_flags {
    /// The client may read the region.
    pub const READ: u32 = 1 << 0;
    /// The client may write the region.
    pub const WRITE: u32 = 1 << 1;
    /// The region can be mmap()ed (never set by us).
    pub const MMAP: u32 = 1 << 2;
    /// The reply carries capabilities (never set by us).
    pub const CAPS: u32 = 1 << 3;
}

/// `VFIO_IRQ_INFO_*` (DEVICE_GET_IRQ_INFO).
pub mod irq_info_flags {
    /// The IRQ index can signal through an eventfd.
    pub const EVENTFD: u32 = 1 << 0;
    /// The IRQ index supports MASK/UNMASK.
    pub const MASKABLE: u32 = 1 << 1;
    /// The IRQ index masks itself after triggering.
    pub const AUTOMASKED: u32 = 1 << 2;
    /// Vectors are set up as a set (no resize without disabling).
    pub const NORESIZE: u32 = 1 << 3;
}

/// `VFIO_IRQ_SET_*` (DEVICE_SET_IRQS).
pub mod irq_set_flags {
    /// No data: act unconditionally.
    pub const DATA_NONE: u32 = 1 << 0;
    /// Data is an array of booleans.
    pub const DATA_BOOL: u32 = 1 << 1;
    /// Data is an array of eventfds (in the ancillary data).
    pub const DATA_EVENTFD: u32 = 1 << 2;
    /// Mask action.
    pub const ACTION_MASK: u32 = 1 << 3;
    /// Unmask action.
    pub const ACTION_UNMASK: u32 = 1 << 4;
    /// Trigger action.
    pub const ACTION_TRIGGER: u32 = 1 << 5;
    /// All data-type bits.
    pub const DATA_MASK: u32 = DATA_NONE | DATA_BOOL | DATA_EVENTFD;
    /// All action bits.
    pub const ACTION_MASK_ALL: u32 = ACTION_MASK | ACTION_UNMASK | ACTION_TRIGGER;
}

/// `DMA_MAP` flags.
pub mod dma_flags {
    /// The server may read the memory.
    pub const READ: u32 = 1 << 0;
    /// The server may write the memory.
    pub const WRITE: u32 = 1 << 1;
    /// `DMA_UNMAP` flag: unmap everything (`VFIO_DMA_UNMAP_FLAG_ALL`).
    pub const UNMAP_ALL: u32 = 1 << 1;
}

/// PCI region indexes (`VFIO_PCI_*_REGION_INDEX`).
pub mod pci {
    /// BAR0.
    pub const BAR0_REGION_INDEX: u32 = 0;
    /// PCI configuration space.
    pub const CONFIG_REGION_INDEX: u32 = 7;
    /// Number of standard PCI regions (BAR0-5, ROM, config, VGA).
    pub const NUM_REGIONS: u32 = 9;
    /// Legacy INTx.
    pub const INTX_IRQ_INDEX: u32 = 0;
    /// MSI.
    pub const MSI_IRQ_INDEX: u32 = 1;
    /// MSI-X.
    pub const MSIX_IRQ_INDEX: u32 = 2;
    /// Number of standard PCI IRQ indexes (INTx, MSI, MSI-X, ERR, REQ).
    pub const NUM_IRQS: u32 = 5;
}

/// Size of the fixed part of `REGION_READ`/`REGION_WRITE` payloads.
pub const REGION_ACCESS_SIZE: usize = RegionAccess::SIZE;
/// Size of the `DMA_MAP` payload.
pub const DMA_MAP_SIZE: usize = DmaMap::SIZE;
/// Size of the `DMA_UNMAP` payload.
pub const DMA_UNMAP_SIZE: usize = DmaUnmap::SIZE;
/// Size of the `DEVICE_GET_INFO` payload.
pub const DEVICE_INFO_SIZE: usize = DeviceInfo::SIZE;
/// Size of the `DEVICE_GET_REGION_INFO` payload (without capabilities).
pub const REGION_INFO_SIZE: usize = RegionInfo::SIZE;
/// Size of the `DEVICE_GET_IRQ_INFO` payload.
pub const IRQ_INFO_SIZE: usize = IrqInfo::SIZE;
/// Size of the fixed part of the `DEVICE_SET_IRQS` payload.
pub const IRQ_SET_SIZE: usize = IrqSet::SIZE;

/// A fixed-size integer field of a wire structure, in host byte order.
pub trait Field: Sized + Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Read one from the front of `r` (`None`: too short).
    fn get(r: &mut Reader<'_>) -> Option<Self>;
    /// Append to `out`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn get(r: &mut Reader<'_>) -> Option<$t> {
                r.array().map(<$t>::from_ne_bytes)
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
int_field!(u16, u32, u64);

/// Declares a fixed-layout wire structure once, as a list of fields in
/// wire order, and derives its codec from that list: `SIZE` (the sum of the
/// field sizes), `decode` (extra trailing bytes are ignored; `None` when
/// too short), `decode_prefix` (also returns the bytes after it) and
/// `encode`. Every message structure of the protocol is declared with it,
/// so the layout is written in exactly one place.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Encoded size in bytes.
            pub const SIZE: usize = 0 $( + <$ty as Field>::SIZE )*;

            /// Decode from the front of `b` and return the rest
            /// (`None`: shorter than [`Self::SIZE`]).
            pub fn decode_prefix(b: &[u8]) -> Option<($name, &[u8])> {
                let mut r = Reader::new(b);
                let v = $name { $( $field: <$ty as Field>::get(&mut r)?, )* };
                Some((v, r.rest()))
            }

            /// Decode from the front of `b` (trailing bytes are ignored).
            pub fn decode(b: &[u8]) -> Option<$name> {
                $name::decode_prefix(b).map(|(v, _)| v)
            }

            /// Encode to exactly [`Self::SIZE`] bytes.
            pub fn encode(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity($name::SIZE);
                $( Field::put(self.$field, &mut out); )*
                out
            }
        }
    };
}

wire_struct! {
    /// The 16-byte header of every message.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Header {
        /// Message id, chosen by the sender of a command, echoed in its reply.
        pub msg_id: u16,
        /// Command number ([`cmd`]).
        pub command: u16,
        /// Size of the whole message including this header.
        pub size: u32,
        /// [`flags`].
        pub flags: u32,
        /// errno in error replies; reserved (0) otherwise.
        pub error: u32,
    }
}

impl Header {
    /// The message type bits.
    pub fn msg_type(&self) -> u32 {
        self.flags & flags::TYPE_MASK
    }

    /// Whether this is a command that wants no reply.
    pub fn no_reply(&self) -> bool {
        self.flags & flags::NO_REPLY != 0
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }

    /// A command header for a payload of `payload_len` bytes (`None` if the
    /// message would not fit the 32-bit size field).
    pub fn command(msg_id: u16, command: u16, payload_len: usize) -> Option<Header> {
        Some(Header {
            msg_id,
            command,
            size: total_size(payload_len)?,
            flags: flags::TYPE_COMMAND,
            error: 0,
        })
    }

    /// A success reply header for a payload of `payload_len` bytes.
    pub fn reply(msg_id: u16, command: u16, payload_len: usize) -> Option<Header> {
        Some(Header {
            msg_id,
            command,
            size: total_size(payload_len)?,
            flags: flags::TYPE_REPLY,
            error: 0,
        })
    }

    /// An error reply header (no payload, as the specification requires).
    pub fn error_reply(msg_id: u16, command: u16, errno: u32) -> Header {
        Header {
            msg_id,
            command,
            size: HEADER_SIZE as u32,
            flags: flags::TYPE_REPLY | flags::ERROR,
            error: errno,
        }
    }
}

fn total_size(payload_len: usize) -> Option<u32> {
    u32::try_from(payload_len.checked_add(HEADER_SIZE)?).ok()
}

/// A bounds-checked little cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// The next field of type `T`.
    pub fn get<T: Field>(&mut self) -> Option<T> {
        T::get(self)
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

wire_struct! {
    /// `REGION_READ` / `REGION_WRITE` fixed part (the data follows it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RegionAccess {
        /// Offset into the region.
        pub offset: u64,
        /// Region index.
        pub region: u32,
        /// Byte count.
        pub count: u32,
    }
}

impl RegionAccess {
    /// Encode the fixed part followed by `data`.
    pub fn encode_with(&self, data: &[u8]) -> Vec<u8> {
        let mut out = self.encode();
        out.extend_from_slice(data);
        out
    }
}

wire_struct! {
    /// `DMA_MAP` payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DmaMap {
        /// Size of this structure (32).
        pub argsz: u32,
        /// [`dma_flags`] READ/WRITE.
        pub flags: u32,
        /// Offset into the passed fd.
        pub offset: u64,
        /// DMA address (IOVA).
        pub address: u64,
        /// Size in bytes.
        pub size: u64,
    }
}

wire_struct! {
    /// `DMA_UNMAP` payload (request and reply).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DmaUnmap {
        /// Maximum reply size (request) / size of the structure (reply).
        pub argsz: u32,
        /// 0, or [`dma_flags::UNMAP_ALL`].
        pub flags: u32,
        /// DMA address.
        pub address: u64,
        /// Size in bytes.
        pub size: u64,
    }
}

wire_struct! {
    /// `DEVICE_GET_INFO` payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DeviceInfo {
        /// Maximum reply size (request) / full reply size (reply).
        pub argsz: u32,
        /// [`device_flags`].
        pub flags: u32,
        /// Number of regions.
        pub num_regions: u32,
        /// Number of IRQ indexes.
        pub num_irqs: u32,
    }
}

wire_struct! {
    /// `DEVICE_GET_REGION_INFO` payload (without capabilities).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct RegionInfo {
        /// Maximum reply size (request) / full reply size (reply).
        pub argsz: u32,
        /// [`region_flags`].
        pub flags: u32,
        /// Region index.
        pub index: u32,
        /// Offset of the first capability (0: none).
        pub cap_offset: u32,
        /// Region size in bytes.
        pub size: u64,
        /// mmap() offset (0: not mappable).
        pub offset: u64,
    }
}

wire_struct! {
    /// `DEVICE_GET_IRQ_INFO` payload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IrqInfo {
        /// Maximum reply size (request) / full reply size (reply).
        pub argsz: u32,
        /// [`irq_info_flags`].
        pub flags: u32,
        /// IRQ index.
        pub index: u32,
        /// Number of vectors.
        pub count: u32,
    }
}

wire_struct! {
    /// `DEVICE_SET_IRQS` fixed part (trailing data, if any, follows it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IrqSet {
        /// Size of the request payload.
        pub argsz: u32,
        /// [`irq_set_flags`].
        pub flags: u32,
        /// IRQ index.
        pub index: u32,
        /// First vector.
        pub start: u32,
        /// Number of vectors.
        pub count: u32,
    }
}

wire_struct! {
    /// The fixed part of the `VERSION` payload (the JSON text follows it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VersionNumber {
        /// Major version.
        pub major: u16,
        /// Minor version.
        pub minor: u16,
    }
}

/// The `VERSION` payload: major, minor and the optional JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// The JSON document, without its NUL terminator (`None`: absent).
    pub json: Option<serde_json::Value>,
}

impl Version {
    /// Decode. The JSON text ends at its first NUL; a missing NUL is
    /// tolerated; an empty text means "no capabilities".
    pub fn decode(b: &[u8]) -> Result<Version, Error> {
        let (n, rest) = VersionNumber::decode_prefix(b).ok_or(Error::VersionShort)?;
        let text = match rest.iter().position(|&c| c == 0) {
            Some(nul) => rest.get(..nul).unwrap_or_default(),
            None => rest,
        };
        let mut v = Version {
            major: n.major,
            minor: n.minor,
            json: None,
        };
        if text.iter().all(|c| c.is_ascii_whitespace()) {
            return Ok(v);
        }
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| Error::VersionJson(e.to_string()))?;
        if !value.is_object() {
            return Err(Error::VersionJson("top level is not an object".into()));
        }
        if let Some(caps) = value.get("capabilities") {
            if !caps.is_object() {
                return Err(Error::VersionJson(
                    "\"capabilities\" is not an object".into(),
                ));
            }
        }
        v.json = Some(value);
        Ok(v)
    }

    /// Encode, with a NUL-terminated JSON text when present.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VersionNumber {
            major: self.major,
            minor: self.minor,
        }
        .encode();
        if let Some(json) = &self.json {
            out.extend_from_slice(json.to_string().as_bytes());
            out.push(0);
        }
        out
    }

    /// A numeric capability (`capabilities.<name>`), if present and a
    /// non-negative integer.
    pub fn capability_u64(&self, name: &str) -> Option<u64> {
        self.json.as_ref()?.get("capabilities")?.get(name)?.as_u64()
    }

    /// The capabilities we understand (see [`Caps`]); others (`migration`,
    /// `twin_socket`, `write_multiple`, ...) are ignored.
    pub fn caps(&self) -> Result<Caps, Error> {
        let get = |name: &'static str| -> Result<Option<u64>, Error> {
            let value = self
                .json
                .as_ref()
                .and_then(|j| j.get("capabilities"))
                .and_then(|c| c.get(name));
            match value {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or(Error::BadCapability(name)),
            }
        };
        Ok(Caps {
            max_msg_fds: get(caps::MAX_MSG_FDS)?,
            max_data_xfer_size: get(caps::MAX_DATA_XFER_SIZE)?,
            max_dma_maps: get(caps::MAX_DMA_MAPS)?,
            pgsizes: get(caps::PGSIZES)?,
        })
    }
}

/// Capability names and the defaults the specification gives for absent
/// ones.
pub mod caps {
    /// Most descriptors the sender can receive in one message.
    pub const MAX_MSG_FDS: &str = "max_msg_fds";
    /// Largest `count` of a data transfer message.
    pub const MAX_DATA_XFER_SIZE: &str = "max_data_xfer_size";
    /// Most DMA mappings valid at once.
    pub const MAX_DMA_MAPS: &str = "max_dma_maps";
    /// Supported DMA page sizes, or-ed.
    pub const PGSIZES: &str = "pgsizes";
    /// `max_msg_fds` when absent.
    pub const DEFAULT_MAX_MSG_FDS: u64 = 1;
    /// `max_data_xfer_size` when absent.
    pub const DEFAULT_MAX_DATA_XFER_SIZE: u64 = 1 << 20;
    /// `max_dma_maps` when absent.
    pub const DEFAULT_MAX_DMA_MAPS: u64 = 65535;
    /// `pgsizes` when absent (4 KiB pages only).
    pub const DEFAULT_PGSIZES: u64 = 4096;
}

/// The numeric capabilities of a `VERSION` message that this crate
/// understands; `None` is an absent capability (its default applies, see
/// [`caps`]).
///
/// Negotiation follows the specification: the reply's major equals the
/// proposal's, its minor is at most the proposal's, and its capabilities
/// are a subset of the proposed ones. We also make every reply value no
/// larger than the proposed one ([`Caps::negotiate`]), so that both sides
/// can use the reply as the agreed limit, and the client checks exactly
/// that ([`Caps::check_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps {
    /// `max_msg_fds`.
    pub max_msg_fds: Option<u64>,
    /// `max_data_xfer_size`.
    pub max_data_xfer_size: Option<u64>,
    /// `max_dma_maps`.
    pub max_dma_maps: Option<u64>,
    /// `pgsizes`.
    pub pgsizes: Option<u64>,
}

impl Caps {
    /// `max_msg_fds`, or its default.
    pub fn max_msg_fds_or_default(&self) -> u64 {
        self.max_msg_fds.unwrap_or(caps::DEFAULT_MAX_MSG_FDS)
    }

    /// `max_data_xfer_size`, or its default.
    pub fn max_data_xfer_size_or_default(&self) -> u64 {
        self.max_data_xfer_size
            .unwrap_or(caps::DEFAULT_MAX_DATA_XFER_SIZE)
    }

    /// `max_dma_maps`, or its default.
    pub fn max_dma_maps_or_default(&self) -> u64 {
        self.max_dma_maps.unwrap_or(caps::DEFAULT_MAX_DMA_MAPS)
    }

    /// `pgsizes`, or its default.
    pub fn pgsizes_or_default(&self) -> u64 {
        self.pgsizes.unwrap_or(caps::DEFAULT_PGSIZES)
    }

    /// The JSON document `{"capabilities": {...}}` with the present ones.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (name, v) in [
            (caps::MAX_MSG_FDS, self.max_msg_fds),
            (caps::MAX_DATA_XFER_SIZE, self.max_data_xfer_size),
            (caps::MAX_DMA_MAPS, self.max_dma_maps),
            (caps::PGSIZES, self.pgsizes),
        ] {
            if let Some(v) = v {
                m.insert(name.to_string(), v.into());
            }
        }
        serde_json::json!({ "capabilities": m })
    }

    /// Server side: the reply to `proposed`, given what we support
    /// (`ours`, every field present). Only proposed capabilities appear in
    /// the reply, each no larger than proposed: the smaller of the two
    /// numbers, and for `pgsizes` the page sizes both support.
    pub fn negotiate(ours: &Caps, proposed: &Caps) -> Result<Caps, Error> {
        let min = |o: Option<u64>, p: Option<u64>| p.map(|p| o.map_or(p, |o| o.min(p)));
        if proposed.max_data_xfer_size == Some(0) {
            return Err(Error::BadCapability(caps::MAX_DATA_XFER_SIZE));
        }
        let pgsizes = match proposed.pgsizes {
            None => None,
            Some(p) => match ours.pgsizes_or_default() & p {
                0 => return Err(Error::NoCommonPageSize),
                both => Some(both),
            },
        };
        if proposed.pgsizes.is_none() && ours.pgsizes_or_default() & caps::DEFAULT_PGSIZES == 0 {
            return Err(Error::NoCommonPageSize);
        }
        Ok(Caps {
            max_msg_fds: min(ours.max_msg_fds, proposed.max_msg_fds),
            max_data_xfer_size: min(ours.max_data_xfer_size, proposed.max_data_xfer_size),
            max_dma_maps: min(ours.max_dma_maps, proposed.max_dma_maps),
            pgsizes,
        })
    }

    /// Client side: check a server's reply against what we proposed: every
    /// capability it carries was proposed and is no larger (`pgsizes`: a
    /// non-empty subset of the proposed bits).
    pub fn check_reply(proposed: &Caps, reply: &Caps) -> Result<(), Error> {
        for (name, p, r) in [
            (caps::MAX_MSG_FDS, proposed.max_msg_fds, reply.max_msg_fds),
            (
                caps::MAX_DATA_XFER_SIZE,
                proposed.max_data_xfer_size,
                reply.max_data_xfer_size,
            ),
            (
                caps::MAX_DMA_MAPS,
                proposed.max_dma_maps,
                reply.max_dma_maps,
            ),
        ] {
            match (p, r) {
                (_, None) => {}
                (None, Some(_)) => return Err(Error::NotProposed(name)),
                (Some(p), Some(r)) if r > p => {
                    return Err(Error::CapabilityLarger {
                        name,
                        proposed: p,
                        reply: r,
                    })
                }
                _ => {}
            }
        }
        if reply.max_data_xfer_size == Some(0) {
            return Err(Error::BadCapability(caps::MAX_DATA_XFER_SIZE));
        }
        match (proposed.pgsizes, reply.pgsizes) {
            (_, None) => Ok(()),
            (None, Some(_)) => Err(Error::NotProposed(caps::PGSIZES)),
            (Some(p), Some(r)) if r & !p != 0 => Err(Error::CapabilityLarger {
                name: caps::PGSIZES,
                proposed: p,
                reply: r,
            }),
            (Some(_), Some(0)) => Err(Error::NoCommonPageSize),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_match_the_os() {
        use rustix::io::Errno;
        let pairs = [
            (errno::EPERM, Errno::PERM),
            (errno::ENOENT, Errno::NOENT),
            (errno::EIO, Errno::IO),
            (errno::EFAULT, Errno::FAULT),
            (errno::EBUSY, Errno::BUSY),
            (errno::EEXIST, Errno::EXIST),
            (errno::EINVAL, Errno::INVAL),
            (errno::ENOSPC, Errno::NOSPC),
            (errno::ENOSYS, Errno::NOSYS),
            (errno::EMSGSIZE, Errno::MSGSIZE),
            (errno::ENOTSUP, Errno::NOTSUP),
        ];
        for (ours, os) in pairs {
            assert_eq!(ours as i32, os.raw_os_error());
        }
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            msg_id: 0x1234,
            command: cmd::REGION_READ,
            size: 48,
            flags: flags::TYPE_REPLY | flags::ERROR,
            error: 22,
        };
        assert_eq!(h.encode().len(), HEADER_SIZE);
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&[0u8; 15]), None);
    }

    #[test]
    fn version_json_nul_optional() {
        let with_nul =
            Version::decode(b"\x01\x00\x00\x00{\"capabilities\":{\"max_msg_fds\":4}}\0").unwrap();
        let without =
            Version::decode(b"\x01\x00\x00\x00{\"capabilities\":{\"max_msg_fds\":4}}").unwrap();
        assert_eq!(with_nul, without);
        assert_eq!(with_nul.capability_u64("max_msg_fds"), Some(4));
        assert_eq!(Version::decode(b"\x01\x00\x00\x00").unwrap().json, None);
        assert_eq!(Version::decode(b"\x01\x00\x00\x00\0").unwrap().json, None);
        assert!(Version::decode(b"\x01\x00").is_err());
        assert!(Version::decode(b"\x01\x00\x00\x00{").is_err());
        assert!(Version::decode(b"\x01\x00\x00\x00[1]").is_err());
        assert!(Version::decode(b"\x01\x00\x00\x00{\"capabilities\":3}").is_err());
        assert!(Version::decode(b"\x01\x00\x00\x00\xff\xfe").is_err());
    }

    #[test]
    fn field_lists_give_the_specified_layout() {
        // DMA_MAP per the specification: argsz@0 (4), flags@4 (4),
        // offset@8 (8), address@16 (8), size@24 (8).
        let m = DmaMap {
            argsz: 32,
            flags: 3,
            offset: 0x1111,
            address: 0x2222_0000,
            size: 0x3000,
        };
        let mut want = Vec::new();
        want.extend_from_slice(&32u32.to_ne_bytes());
        want.extend_from_slice(&3u32.to_ne_bytes());
        want.extend_from_slice(&0x1111u64.to_ne_bytes());
        want.extend_from_slice(&0x2222_0000u64.to_ne_bytes());
        want.extend_from_slice(&0x3000u64.to_ne_bytes());
        assert_eq!(m.encode(), want);
        assert_eq!(DmaMap::decode(&want), Some(m));
        // REGION_READ: offset@0 (8), region@8 (4), count@12 (4), data.
        let a = RegionAccess {
            offset: 8,
            region: 7,
            count: 2,
        };
        let bytes = a.encode_with(&[0xaa, 0xbb]);
        assert_eq!(&bytes[8..12], &7u32.to_ne_bytes());
        assert_eq!(
            RegionAccess::decode_prefix(&bytes),
            Some((a, &[0xaa, 0xbb][..]))
        );
    }

    #[test]
    fn short_payloads_decode_to_none() {
        assert_eq!(
            (
                RegionAccess::SIZE,
                DmaMap::SIZE,
                DmaUnmap::SIZE,
                DeviceInfo::SIZE,
                RegionInfo::SIZE,
                IrqInfo::SIZE,
                IrqSet::SIZE
            ),
            (16, 32, 24, 16, 32, 16, 20)
        );
        assert!(RegionAccess::decode(&[0; 15]).is_none());
        assert!(DmaMap::decode(&[0; 31]).is_none());
        assert!(DmaUnmap::decode(&[0; 23]).is_none());
        assert!(DeviceInfo::decode(&[0; 15]).is_none());
        assert!(RegionInfo::decode(&[0; 31]).is_none());
        assert!(IrqInfo::decode(&[0; 15]).is_none());
        assert!(IrqSet::decode(&[0; 19]).is_none());
    }
}
