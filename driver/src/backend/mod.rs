//! Transports. Each implements [`crate::CardIo`].

pub mod model;
pub mod uio;
#[cfg(feature = "vfio")]
pub mod vfio;
#[cfg(feature = "vfio-user")]
pub mod vfio_user;
