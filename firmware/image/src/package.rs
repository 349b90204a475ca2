//! Signed packages (seed 002, claim 42): one file holding a manifest and
//! the components it lists, signed with ed25519 (ed25519-dalek ≥ 2).
//!
//! ```text
//! offset size
//! 0      8    magic "HTLSPKG1"
//! 8      2    format = 1 (LE)
//! 10     2    flags: bit 0 = signed
//! 12     8    key id: the first 8 bytes of SHA-256 of the public key
//! 20     64   ed25519 signature over DOMAIN || header_len (LE u32) || header
//! 84     4    header_len (LE), at most PackageLimits::max_header
//! 88     ..   header: JSON {"manifest": Manifest, "omitted": [names]}
//! ..     ..   the payload of each manifest component not omitted, in order
//! ```
//!
//! The signature covers the header; the header's manifest pins every
//! payload by SHA-256. [`read_package`] checks the signature, the expiry
//! and every bound before reading a payload, and every payload's SHA-256
//! before returning: nothing reaches flash before the whole package is
//! verified. Omitted components make a partial package (claims 47–49):
//! the card copies them from its current context area.

use crate::manifest::{Component, ComponentKind, Manifest, Sha};
use crate::ImageError;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::Read;

const MAGIC: &[u8; 8] = b"HTLSPKG1";
const FORMAT: u16 = 1;
const DOMAIN: &[u8] = b"hitless-package-v1\0";

/// Bounds applied to sizes read from a package before allocating.
#[derive(Clone, Copy, Debug)]
pub struct PackageLimits {
    /// Largest header (manifest) in bytes.
    pub max_header: u32,
    /// Largest sum of payloads (the card passes its context area's size).
    pub max_payload: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_header: 64 * 1024,
            max_payload: 64 * 1024 * 1024,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    manifest: Manifest,
    omitted: Vec<String>,
}

/// A new signing key (the keygen helper).
pub fn generate_key<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> SigningKey {
    SigningKey::generate(rng)
}

/// The key id a package names its signer by.
pub fn key_id(k: &VerifyingKey) -> [u8; 8] {
    let d = Sha::of(k.as_bytes()).bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

/// Builds a package: components, then sign.
#[derive(Clone, Debug)]
pub struct PackageBuilder {
    manifest: Manifest,
    payloads: Vec<Vec<u8>>,
    omitted: Vec<String>,
}

impl PackageBuilder {
    /// A package of `version`, expiring at `expires` (Unix seconds).
    pub fn new(version: u64, expires: u64) -> Self {
        PackageBuilder {
            manifest: Manifest {
                version,
                expires,
                components: Vec::new(),
            },
            payloads: Vec::new(),
            omitted: Vec::new(),
        }
    }

    /// Add a component.
    pub fn component(
        mut self,
        name: &str,
        kind: ComponentKind,
        version: &str,
        modules: &[&str],
        data: Vec<u8>,
    ) -> Self {
        self.manifest.components.push(Component {
            name: name.into(),
            kind,
            version: version.into(),
            size: data.len() as u64,
            sha256: Sha::of(&data),
            modules: modules.iter().map(|m| m.to_string()).collect(),
        });
        self.payloads.push(data);
        self
    }

    /// Make it partial: omit the payload of every component `base` holds
    /// unchanged (same SHA-256).
    pub fn partial_against(mut self, base: &Manifest) -> Self {
        self.omitted = self
            .manifest
            .components
            .iter()
            .filter(|c| base.holds_unchanged(c))
            .map(|c| c.name.clone())
            .collect();
        self
    }

    /// The manifest as built.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn assemble(&self, flags: u16, key: [u8; 8], sign: impl FnOnce(&[u8]) -> [u8; 64]) -> Vec<u8> {
        let header = serde_json::to_vec(&Header {
            manifest: self.manifest.clone(),
            omitted: self.omitted.clone(),
        })
        .unwrap_or_default();
        let hl = (header.len() as u32).to_le_bytes();
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(&hl);
        msg.extend_from_slice(&header);
        let sig = sign(&msg);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&key);
        out.extend_from_slice(&sig);
        out.extend_from_slice(&hl);
        out.extend_from_slice(&header);
        for (c, p) in self.manifest.components.iter().zip(&self.payloads) {
            if !self.omitted.contains(&c.name) {
                out.extend_from_slice(p);
            }
        }
        out
    }

    /// The signed package file.
    pub fn build_signed(&self, key: &SigningKey) -> Vec<u8> {
        self.assemble(1, key_id(&key.verifying_key()), |m| key.sign(m).to_bytes())
    }

    /// An unsigned package (refused by every card; for tests and tools).
    pub fn build_unsigned(&self) -> Vec<u8> {
        self.assemble(0, [0; 8], |_| [0; 64])
    }
}

/// A verified package, read whole: its manifest and the payloads it carries.
#[derive(Clone, Debug)]
pub struct VerifiedPackage {
    pub manifest: Manifest,
    /// Payloads by manifest index; `None` for an omitted component.
    pub payloads: Vec<Option<Vec<u8>>>,
}

fn exact<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), ImageError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ImageError::Truncated
        } else {
            ImageError::Io(e)
        }
    })
}

/// Read and verify a package from a stream: signature by one of
/// `trusted`, not expired at `now`, sizes within `limits`, every payload
/// matching its SHA-256, nothing after the last one.
pub fn read_package<R: Read>(
    mut r: R,
    trusted: &[VerifyingKey],
    now: u64,
    limits: PackageLimits,
) -> Result<VerifiedPackage, ImageError> {
    let mut fixed = [0u8; 88];
    exact(&mut r, &mut fixed)?;
    let format = u16::from_le_bytes([fixed[8], fixed[9]]);
    if &fixed[..8] != MAGIC || format != FORMAT {
        return Err(ImageError::BadPackage(format));
    }
    if u16::from_le_bytes([fixed[10], fixed[11]]) & 1 == 0 {
        return Err(ImageError::Unsigned);
    }
    let mut kid = [0u8; 8];
    kid.copy_from_slice(&fixed[12..20]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&fixed[20..84]);
    let hl = u32::from_le_bytes([fixed[84], fixed[85], fixed[86], fixed[87]]);
    if hl > limits.max_header {
        return Err(ImageError::TooLarge {
            what: "package header",
            size: hl.into(),
            limit: limits.max_header.into(),
        });
    }
    let mut header = vec![0u8; hl as usize];
    exact(&mut r, &mut header)?;
    let key =
        trusted
            .iter()
            .find(|k| key_id(k) == kid)
            .ok_or_else(|| ImageError::UntrustedKey {
                key_id: kid.iter().map(|b| format!("{b:02x}")).collect(),
            })?;
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(&hl.to_le_bytes());
    msg.extend_from_slice(&header);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| ImageError::BadSignature)?;
    let h: Header =
        serde_json::from_slice(&header).map_err(|e| ImageError::BadManifest(e.to_string()))?;
    // Re-check the manifest's own rules through its decoder.
    let manifest = Manifest::from_bytes(&h.manifest.to_bytes())?;
    if now > manifest.expires {
        return Err(ImageError::Expired {
            expires: manifest.expires,
            now,
        });
    }
    if let Some(n) = h.omitted.iter().find(|n| manifest.component(n).is_none()) {
        return Err(ImageError::BadManifest(format!(
            "omitted {n} is not in the manifest"
        )));
    }
    let carried: u64 = manifest
        .components
        .iter()
        .filter(|c| !h.omitted.contains(&c.name))
        .map(|c| c.size)
        .try_fold(0u64, |a, s| a.checked_add(s))
        .unwrap_or(u64::MAX);
    if carried > limits.max_payload
        || manifest
            .components
            .iter()
            .any(|c| c.size > limits.max_payload)
    {
        return Err(ImageError::TooLarge {
            what: "package payload",
            size: carried,
            limit: limits.max_payload,
        });
    }
    let mut payloads = Vec::with_capacity(manifest.components.len());
    for c in &manifest.components {
        if h.omitted.contains(&c.name) {
            payloads.push(None);
            continue;
        }
        let mut p = vec![0u8; c.size as usize];
        exact(&mut r, &mut p)?;
        if Sha::of(&p) != c.sha256 {
            return Err(ImageError::ComponentChecksum {
                name: c.name.clone(),
            });
        }
        payloads.push(Some(p));
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(ImageError::TrailingData),
        Err(e) => return Err(ImageError::Io(e)),
    }
    Ok(VerifiedPackage { manifest, payloads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(seed: u64) -> SigningKey {
        generate_key(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    fn pkg() -> PackageBuilder {
        PackageBuilder::new(2, 100)
            .component("gw", ComponentKind::Gateware, "2", &["fpga"], vec![1; 300])
            .component("fw", ComponentKind::Firmware, "2", &["cpu"], vec![2; 200])
    }

    #[test]
    fn verifies_and_rejects() {
        let k = key(1);
        let t = [k.verifying_key()];
        let good = pkg().build_signed(&k);
        let v = read_package(&good[..], &t, 50, PackageLimits::default()).unwrap();
        assert_eq!(v.manifest.version, 2);
        assert_eq!(v.payloads[1].as_deref(), Some(&[2u8; 200][..]));
        let lim = PackageLimits::default();
        assert!(matches!(
            read_package(&good[..good.len() - 1], &t, 50, lim),
            Err(ImageError::Truncated)
        ));
        assert!(matches!(
            read_package(&good[..40], &t, 50, lim),
            Err(ImageError::Truncated)
        ));
        let mut tampered = good.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 1;
        assert!(matches!(
            read_package(&tampered[..], &t, 50, lim),
            Err(ImageError::ComponentChecksum { .. })
        ));
        let mut th = good.clone();
        th[100] ^= 0x20;
        assert!(matches!(
            read_package(&th[..], &t, 50, lim),
            Err(ImageError::BadSignature)
        ));
        assert!(matches!(
            read_package(&pkg().build_unsigned()[..], &t, 50, lim),
            Err(ImageError::Unsigned)
        ));
        assert!(matches!(
            read_package(&pkg().build_signed(&key(2))[..], &t, 50, lim),
            Err(ImageError::UntrustedKey { .. })
        ));
        assert!(matches!(
            read_package(&good[..], &t, 101, lim),
            Err(ImageError::Expired { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            read_package(&long[..], &t, 50, lim),
            Err(ImageError::TrailingData)
        ));
        let small = PackageLimits {
            max_header: 16,
            max_payload: 1 << 20,
        };
        assert!(matches!(
            read_package(&good[..], &t, 50, small),
            Err(ImageError::TooLarge { .. })
        ));
        let tiny = PackageLimits {
            max_header: 1 << 16,
            max_payload: 400,
        };
        assert!(matches!(
            read_package(&good[..], &t, 50, tiny),
            Err(ImageError::TooLarge { .. })
        ));
    }

    #[test]
    fn huge_header_length_is_refused_before_allocating() {
        let k = key(1);
        let mut p = pkg().build_signed(&k);
        p[84..88].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = read_package(&p[..], &[k.verifying_key()], 0, PackageLimits::default());
        assert!(matches!(r, Err(ImageError::TooLarge { .. })));
    }

    #[test]
    fn partial_package_omits_unchanged() {
        let k = key(1);
        let base = pkg().manifest().clone();
        let p = PackageBuilder::new(3, 100)
            .component("gw", ComponentKind::Gateware, "2", &["fpga"], vec![1; 300])
            .component("fw", ComponentKind::Firmware, "3", &["cpu"], vec![3; 200])
            .partial_against(&base);
        let bytes = p.build_signed(&k);
        let v = read_package(
            &bytes[..],
            &[k.verifying_key()],
            0,
            PackageLimits::default(),
        )
        .unwrap();
        assert!(v.payloads[0].is_none());
        assert_eq!(v.payloads[1].as_ref().map(Vec::len), Some(200));
        assert!(bytes.len() < pkg().build_signed(&k).len() - 250);
    }
}
