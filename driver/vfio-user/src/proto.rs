//! Wire format: the message header, command numbers, flag bits, errno
//! values and the fixed-layout payload structures of the subset we speak.
//!
//! Everything here is pure data: encoders build byte vectors, decoders take
//! byte slices and return `None` when the input is too short. Nothing in this
//! module can panic on any input.
//!
//! All integers are in host byte order, as the specification requires
//! ("all data is in the endianness of the host system").

/// Size of the message header that precedes every message.
pub const HEADER_SIZE: usize = 16;

/// Protocol major version we implement.
pub const VERSION_MAJOR: u16 = 1;
/// Protocol minor version we implement.
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
pub const REGION_ACCESS_SIZE: usize = 16;
/// Size of the `DMA_MAP` payload.
pub const DMA_MAP_SIZE: usize = 32;
/// Size of the `DMA_UNMAP` payload.
pub const DMA_UNMAP_SIZE: usize = 24;
/// Size of the `DEVICE_GET_INFO` payload.
pub const DEVICE_INFO_SIZE: usize = 16;
/// Size of the `DEVICE_GET_REGION_INFO` payload (without capabilities).
pub const REGION_INFO_SIZE: usize = 32;
/// Size of the `DEVICE_GET_IRQ_INFO` payload.
pub const IRQ_INFO_SIZE: usize = 16;
/// Size of the fixed part of the `DEVICE_SET_IRQS` payload.
pub const IRQ_SET_SIZE: usize = 20;

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

impl Header {
    /// Decode a header from the first 16 bytes of `b`.
    pub fn decode(b: &[u8]) -> Option<Header> {
        let mut r = Reader::new(b);
        Some(Header {
            msg_id: r.u16()?,
            command: r.u16()?,
            size: r.u32()?,
            flags: r.u32()?,
            error: r.u32()?,
        })
    }

    /// Encode to 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut w = Vec::with_capacity(HEADER_SIZE);
        w.extend_from_slice(&self.msg_id.to_ne_bytes());
        w.extend_from_slice(&self.command.to_ne_bytes());
        w.extend_from_slice(&self.size.to_ne_bytes());
        w.extend_from_slice(&self.flags.to_ne_bytes());
        w.extend_from_slice(&self.error.to_ne_bytes());
        out.copy_from_slice(&w);
        out
    }

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

    /// The next u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_ne_bytes)
    }

    /// The next u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_ne_bytes)
    }

    /// The next u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_ne_bytes)
    }

    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// A tiny append-only encoder.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Append a u16.
    pub fn u16(mut self, v: u16) -> Writer {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// Append a u32.
    pub fn u32(mut self, v: u32) -> Writer {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// Append a u64.
    pub fn u64(mut self, v: u64) -> Writer {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// Append raw bytes.
    pub fn bytes(mut self, b: &[u8]) -> Writer {
        self.buf.extend_from_slice(b);
        self
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// `REGION_READ` / `REGION_WRITE` fixed part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionAccess {
    /// Offset into the region.
    pub offset: u64,
    /// Region index.
    pub region: u32,
    /// Byte count.
    pub count: u32,
}

impl RegionAccess {
    /// Decode the fixed part; returns it and the bytes after it.
    pub fn decode(b: &[u8]) -> Option<(RegionAccess, &[u8])> {
        let mut r = Reader::new(b);
        let a = RegionAccess {
            offset: r.u64()?,
            region: r.u32()?,
            count: r.u32()?,
        };
        Some((a, r.rest()))
    }

    /// Encode the fixed part followed by `data`.
    pub fn encode(&self, data: &[u8]) -> Vec<u8> {
        Writer::new()
            .u64(self.offset)
            .u32(self.region)
            .u32(self.count)
            .bytes(data)
            .finish()
    }
}

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

impl DmaMap {
    /// Decode (extra trailing bytes are ignored).
    pub fn decode(b: &[u8]) -> Option<DmaMap> {
        let mut r = Reader::new(b);
        Some(DmaMap {
            argsz: r.u32()?,
            flags: r.u32()?,
            offset: r.u64()?,
            address: r.u64()?,
            size: r.u64()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u64(self.offset)
            .u64(self.address)
            .u64(self.size)
            .finish()
    }
}

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

impl DmaUnmap {
    /// Decode (extra trailing bytes are ignored).
    pub fn decode(b: &[u8]) -> Option<DmaUnmap> {
        let mut r = Reader::new(b);
        Some(DmaUnmap {
            argsz: r.u32()?,
            flags: r.u32()?,
            address: r.u64()?,
            size: r.u64()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u64(self.address)
            .u64(self.size)
            .finish()
    }
}

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

impl DeviceInfo {
    /// Decode (extra trailing bytes are ignored).
    pub fn decode(b: &[u8]) -> Option<DeviceInfo> {
        let mut r = Reader::new(b);
        Some(DeviceInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            num_regions: r.u32()?,
            num_irqs: r.u32()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u32(self.num_regions)
            .u32(self.num_irqs)
            .finish()
    }
}

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

impl RegionInfo {
    /// Decode (extra trailing bytes are ignored).
    pub fn decode(b: &[u8]) -> Option<RegionInfo> {
        let mut r = Reader::new(b);
        Some(RegionInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            cap_offset: r.u32()?,
            size: r.u64()?,
            offset: r.u64()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.cap_offset)
            .u64(self.size)
            .u64(self.offset)
            .finish()
    }
}

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

impl IrqInfo {
    /// Decode (extra trailing bytes are ignored).
    pub fn decode(b: &[u8]) -> Option<IrqInfo> {
        let mut r = Reader::new(b);
        Some(IrqInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            count: r.u32()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.count)
            .finish()
    }
}

/// `DEVICE_SET_IRQS` fixed part.
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

impl IrqSet {
    /// Decode the fixed part (trailing data is ignored).
    pub fn decode(b: &[u8]) -> Option<IrqSet> {
        let mut r = Reader::new(b);
        Some(IrqSet {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            start: r.u32()?,
            count: r.u32()?,
        })
    }

    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.start)
            .u32(self.count)
            .finish()
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

/// Why a `VERSION` payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Shorter than the 4-byte major/minor pair.
    #[error("VERSION payload shorter than 4 bytes")]
    Short,
    /// The JSON text is not UTF-8, not JSON, or not an object.
    #[error("VERSION capabilities are not a JSON object: {0}")]
    Json(String),
}

impl Version {
    /// Decode. The JSON text ends at its first NUL; a missing NUL is
    /// tolerated; an empty text means "no capabilities".
    pub fn decode(b: &[u8]) -> Result<Version, VersionError> {
        let mut r = Reader::new(b);
        let major = r.u16().ok_or(VersionError::Short)?;
        let minor = r.u16().ok_or(VersionError::Short)?;
        let rest = r.rest();
        let text = match rest.iter().position(|&c| c == 0) {
            Some(nul) => rest.get(..nul).unwrap_or_default(),
            None => rest,
        };
        if text.iter().all(|c| c.is_ascii_whitespace()) {
            return Ok(Version {
                major,
                minor,
                json: None,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| VersionError::Json(e.to_string()))?;
        if !value.is_object() {
            return Err(VersionError::Json("top level is not an object".into()));
        }
        if let Some(caps) = value.get("capabilities") {
            if !caps.is_object() {
                return Err(VersionError::Json(
                    "\"capabilities\" is not an object".into(),
                ));
            }
        }
        Ok(Version {
            major,
            minor,
            json: Some(value),
        })
    }

    /// Encode, with a NUL-terminated JSON text when present.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new().u16(self.major).u16(self.minor);
        if let Some(json) = &self.json {
            w = w.bytes(json.to_string().as_bytes()).bytes(&[0]);
        }
        w.finish()
    }

    /// A numeric capability (`capabilities.<name>`), if present and a
    /// non-negative integer.
    pub fn capability_u64(&self, name: &str) -> Option<u64> {
        self.json.as_ref()?.get("capabilities")?.get(name)?.as_u64()
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
    fn short_payloads_decode_to_none() {
        assert!(RegionAccess::decode(&[0; 15]).is_none());
        assert!(DmaMap::decode(&[0; 31]).is_none());
        assert!(DmaUnmap::decode(&[0; 23]).is_none());
        assert!(DeviceInfo::decode(&[0; 15]).is_none());
        assert!(RegionInfo::decode(&[0; 31]).is_none());
        assert!(IrqInfo::decode(&[0; 15]).is_none());
        assert!(IrqSet::decode(&[0; 19]).is_none());
    }
}
