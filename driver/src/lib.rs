//! The hitless host driver.
//!
//! A [`Card`] is the API a host application uses: checkpoint an image,
//! restore it, append to and read the log, read the card's status. It is
//! written once over the [`CardIo`] trait (registers, DMA window,
//! interrupts); the transports implement that trait:
//!
//! | transport | backend | where |
//! |---|---|---|
//! | in-process reference model | [`backend::model::ModelIo`] | unit tests, driver overhead |
//! | UIO + DMA buffer (Zynq, PYNQ) | [`backend::uio::UioIo`] | boards with the controller on an AXI GP port |
//! | VFIO (`vfio-pci`, IOMMU, MSI-X) | `backend::vfio::VfioIo` (feature `vfio`) | PCIe cards |
//! | vfio-user client | `backend::vfio_user::VfioUserIo` (feature `vfio-user`) | the simulated card (`hitless-sim serve`) |
//! | UART bridge (`uart:/dev/ttyUSB0[@baud]`) | [`backend::uart::UartIo`] | boards without PCIe (`bitstreams/`) |
//!
//! A backup process on another host reads an application's sets and log
//! through the card's read-only backup reader service instead
//! ([`backup::BackupClient`], `backup:HOST:PORT`).
//!
//! ```
//! use hitless_driver::{backend::model::ModelIo, Card, Options, Tier};
//! use hitless_hdl::contract::{perm, DEFAULT_GEOMETRY};
//!
//! let io = ModelIo::new(DEFAULT_GEOMETRY, 8 << 20);
//! let mut card = Card::open(io, Options::default())?;
//! let window = perm::VALID | perm::READ | perm::WRITE | perm::COMMIT | perm::COLD | perm::REGION;
//! let key = card.program_entry(1, 0x5eed, 0, DEFAULT_GEOMETRY.region_size, window)?;
//! let state = b"the application's state".to_vec();
//! let committed = card.checkpoint(key, Tier::Cold, &state)?;
//! assert_eq!(card.restore(key, Tier::Cold)?, state);
//! assert_eq!(committed.seq, 1);
//! # Ok::<(), hitless_driver::Error>(())
//! ```

#[cfg(feature = "async")]
pub mod asynch;
pub mod backend;
pub mod backup;
pub mod card;
pub mod crc;
pub mod credentials;
pub mod daemon;
pub mod dma;
pub mod error;
pub mod firmware;
pub mod heaps;
pub mod io;
pub mod pair;
pub mod spec;
pub mod state;

#[cfg(feature = "async")]
pub use asynch::AsyncCard;
pub use card::{Card, CardStatus, Committed, Options, Tier, TierStatus};
pub use error::{Error, Result};
pub use firmware::Firmware;
pub use io::{CardIo, DmaWindow};
pub use spec::{card_spec, open_card, open_firmware, DEFAULT_CARD};
