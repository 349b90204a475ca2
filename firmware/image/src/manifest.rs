//! The manifest, seed 002's software generic control (SGC) file (claims
//! 19–24): the components of one context (gateware, firmware,
//! configuration, other), each with its version, size, SHA-256 and the
//! modules that need it.
//!
//! Format: JSON by serde, fields in declaration order, digests as
//! lowercase hex. JSON because it is readable with standard tools (a
//! manifest is inspected by operators) and needs no schema compiler; it
//! need not be canonical, because the signature covers the exact bytes as
//! shipped and the metadata pins the exact bytes as stored (SHA-256).

use crate::ImageError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most components in one manifest.
pub const MAX_COMPONENTS: usize = 64;
/// Longest component or module name.
pub const MAX_NAME: usize = 64;

/// What a component is; gateware changes raise a notice (claims 45, 51).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Gateware,
    Firmware,
    Configuration,
    Other,
}

/// A SHA-256 digest, serialized as hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Sha([u8; 32]);

impl Sha {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha(Sha256::digest(data).into())
    }
    /// The raw bytes.
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }
    /// A digest from its raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Sha(b)
    }
    /// Lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Serialize for Sha {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Sha {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(serde::de::Error::custom("sha256 must be 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            let pair =
                std::str::from_utf8(&b[2 * i..2 * i + 2]).map_err(serde::de::Error::custom)?;
            *o = u8::from_str_radix(pair, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(Sha(out))
    }
}

/// One component file of a context (claim 19).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    pub version: String,
    pub size: u64,
    /// Checksum kept in the SGC (claims 21, 22, 24).
    pub sha256: Sha,
    /// The modules that load this component (claim 20).
    pub modules: Vec<String>,
}

/// The SGC file: one context's components and the package version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Monotonic version, compared for anti-rollback.
    pub version: u64,
    /// Expiry, seconds since the Unix epoch (TUF's `expires`).
    pub expires: u64,
    pub components: Vec<Component>,
}

impl Manifest {
    /// Encode (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode and check the rules: bounded count and names, unique names.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ImageError> {
        let m: Manifest =
            serde_json::from_slice(b).map_err(|e| ImageError::BadManifest(e.to_string()))?;
        if m.components.len() > MAX_COMPONENTS {
            return Err(ImageError::BadManifest(format!(
                "{} components",
                m.components.len()
            )));
        }
        for (i, c) in m.components.iter().enumerate() {
            if c.name.is_empty()
                || c.name.len() > MAX_NAME
                || c.modules.iter().any(|x| x.len() > MAX_NAME)
            {
                return Err(ImageError::BadManifest(
                    "bad component or module name".into(),
                ));
            }
            if m.components[..i].iter().any(|o| o.name == c.name) {
                return Err(ImageError::BadManifest(format!(
                    "duplicate component {}",
                    c.name
                )));
            }
        }
        Ok(m)
    }

    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The components module `module` needs (claim 20).
    pub fn components_for<'a>(
        &'a self,
        module: &'a str,
    ) -> impl Iterator<Item = &'a Component> + 'a {
        self.components
            .iter()
            .filter(move |c| c.modules.iter().any(|m| m == module))
    }

    /// Whether `c` is in `self` with the same checksum and size (claim 49).
    pub fn holds_unchanged(&self, c: &Component) -> bool {
        self.component(&c.name)
            .is_some_and(|o| o.sha256 == c.sha256 && o.size == c.size)
    }

    /// Sum of component sizes.
    pub fn total_size(&self) -> u64 {
        self.components.iter().map(|c| c.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(name: &str, kind: ComponentKind, data: &[u8]) -> Component {
        Component {
            name: name.into(),
            kind,
            version: "1".into(),
            size: data.len() as u64,
            sha256: Sha::of(data),
            modules: vec!["fpga".into()],
        }
    }

    #[test]
    fn round_trip_and_rules() {
        let m = Manifest {
            version: 3,
            expires: 10,
            components: vec![
                comp("gw", ComponentKind::Gateware, b"a"),
                comp("fw", ComponentKind::Firmware, b"b"),
            ],
        };
        let b = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        assert!(String::from_utf8(b)
            .unwrap()
            .contains("\"kind\":\"gateware\""));
        assert_eq!(m.components_for("fpga").count(), 2);
        assert_eq!(m.components_for("host").count(), 0);
        let mut d = m.clone();
        d.components.push(comp("gw", ComponentKind::Other, b"c"));
        assert!(matches!(
            Manifest::from_bytes(&d.to_bytes()),
            Err(ImageError::BadManifest(_))
        ));
        assert!(m.holds_unchanged(&comp("gw", ComponentKind::Gateware, b"a")));
        assert!(!m.holds_unchanged(&comp("gw", ComponentKind::Gateware, b"x")));
        assert!(Manifest::from_bytes(b"{not json").is_err());
    }
}
