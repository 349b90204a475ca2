//! The card's configuration with its automatically kept backup (seed 002,
//! claims 23, 24, 53–56).
//!
//! Each device has a configuration area and a configuration backup area,
//! each holding one checksummed record (`"HTLSCFG1" | len | bytes |
//! SHA-256`; the magic's last byte is the format, so a record written by
//! a later firmware in a format this one does not know is *unsupported*,
//! not corrupt). Saving first copies the configuration in place into the
//! backup (claim 55: the backup is kept without the operator asking), then
//! writes the new one, on the primary and then on the secondary; a power
//! cut at any point therefore leaves the old or the new configuration
//! loadable. Loading (claims 53, 54, 56) takes the configuration from the
//! primary, else the secondary's mirror, else the backup of either, else
//! the factory default, and says which it used.

use crate::flash::Nvs;
use crate::layout::{read_record, write_record, FlashStats, Layout, Record, CFG_MAGIC};
use crate::ImageError;

/// Where [`load`] found the configuration it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ConfigSource {
    /// The configuration area of `device` (claim 53).
    Stored { device: usize },
    /// The backup area of `device`: the configuration was missing or corrupt
    /// on both devices (claim 53).
    Backup { device: usize },
    /// Neither the configuration nor a supported backup: the factory
    /// default, which the operator may make permanent (claim 54).
    FactoryDefault,
}

/// A loaded configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedConfig {
    pub data: Vec<u8>,
    pub source: ConfigSource,
}

fn usable<D: Nvs>(
    dev: &mut D,
    layout: &Layout,
    backup: bool,
) -> Result<Option<Vec<u8>>, ImageError> {
    let region = if backup {
        layout.config_backup
    } else {
        layout.config
    };
    Ok(match read_record(dev, region, CFG_MAGIC)? {
        Record::Valid(b) => Some(b),
        other => {
            tracing::debug!(?other, backup, "configuration record not usable");
            None
        }
    })
}

/// Load the configuration: primary, secondary, backups, factory default.
pub fn load<D: Nvs>(
    devs: &mut [D; 2],
    layout: &Layout,
    primary: usize,
    factory: &[u8],
) -> Result<LoadedConfig, ImageError> {
    let order = [primary, 1 - primary];
    for backup in [false, true] {
        for &d in &order {
            if let Some(data) = usable(&mut devs[d], layout, backup)? {
                let source = if backup {
                    ConfigSource::Backup { device: d }
                } else {
                    ConfigSource::Stored { device: d }
                };
                return Ok(LoadedConfig { data, source });
            }
        }
    }
    tracing::warn!("no usable configuration or backup: offering the factory default");
    Ok(LoadedConfig {
        data: factory.to_vec(),
        source: ConfigSource::FactoryDefault,
    })
}

/// Save `data` as the configuration, keeping the previous one as backup,
/// on the primary and then on the secondary (claim 57's order).
pub fn save<D: Nvs>(
    devs: &mut [D; 2],
    layout: &Layout,
    primary: usize,
    data: &[u8],
) -> Result<FlashStats, ImageError> {
    let mut stats = FlashStats::default();
    for d in [primary, 1 - primary] {
        let dev = &mut devs[d];
        if let Some(old) = usable(dev, layout, false)? {
            if old != data {
                write_record(dev, layout.config_backup, CFG_MAGIC, &old, &mut stats)?;
            }
        }
        write_record(dev, layout.config, CFG_MAGIC, data, &mut stats)?;
    }
    Ok(stats)
}
