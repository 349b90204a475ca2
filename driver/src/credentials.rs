//! Application secrets on disk: what a host keeps so that later opens of
//! an application (its own or a backup's) can be signed. One file per
//! application, hex, mode 0600, in a private state directory.

use crate::error::Error;
use crate::firmware::Secret;
use hitless_proto::auth::SECRET_BYTES;
use std::io::Write;
use std::path::PathBuf;

/// Application secrets on disk, one file per application.
#[derive(Debug)]
pub struct Credentials(PathBuf);

impl Credentials {
    /// The store in `dir`, else `$HITLESS_CREDENTIALS`, else
    /// `$XDG_STATE_HOME/hitless`, else `~/.local/state/hitless`. With none
    /// of these there is no private place for secrets: an error, never a
    /// world-readable default such as `/tmp`.
    pub fn new(dir: Option<PathBuf>) -> Result<Self, Error> {
        Self::from_env(
            dir,
            std::env::var_os("HITLESS_CREDENTIALS"),
            std::env::var_os("XDG_STATE_HOME"),
            std::env::var_os("HOME"),
        )
    }

    fn from_env(
        dir: Option<PathBuf>,
        hitless: Option<std::ffi::OsString>,
        xdg_state: Option<std::ffi::OsString>,
        home: Option<std::ffi::OsString>,
    ) -> Result<Self, Error> {
        let nonempty = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty());
        dir.or_else(|| nonempty(hitless).map(PathBuf::from))
            .or_else(|| nonempty(xdg_state).map(|d| PathBuf::from(d).join("hitless")))
            .or_else(|| nonempty(home).map(|h| PathBuf::from(h).join(".local/state/hitless")))
            .map(Self)
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "no state directory for application secrets: set HOME, XDG_STATE_HOME or \
                     HITLESS_CREDENTIALS, or pass --credentials DIR"
                        .into(),
                )
            })
    }

    /// The directory the secrets are in.
    pub fn dir(&self) -> &std::path::Path {
        &self.0
    }
    /// The file of application `app`'s secret.
    pub fn path(&self, app: u32) -> PathBuf {
        self.0.join(format!("app-{app}.secret"))
    }
    /// The secret of `app`, if saved.
    pub fn load(&self, app: u32) -> Result<Option<Secret>, Error> {
        let p = self.path(app);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", p.display()))),
        };
        let t = text.trim();
        let bad = || {
            Error::InvalidArgument(format!(
                "{}: not a {SECRET_BYTES}-byte hex secret",
                p.display()
            ))
        };
        if t.len() != 2 * SECRET_BYTES {
            return Err(bad());
        }
        let mut s = [0u8; SECRET_BYTES];
        for (i, b) in s.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Some(s))
    }
    /// The applications with a saved secret, in ascending order (none when
    /// the directory does not exist yet).
    pub fn apps(&self) -> Result<Vec<u32>, Error> {
        let rd = match std::fs::read_dir(&self.0) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", self.0.display()))),
        };
        let mut apps: Vec<u32> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("app-")?
                    .strip_suffix(".secret")?
                    .parse()
                    .ok()
            })
            .collect();
        apps.sort_unstable();
        Ok(apps)
    }
    /// Save the secret of `app` (mode 0600); returns its file.
    pub fn save(&self, app: u32, s: &Secret) -> Result<PathBuf, Error> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.0)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.0.display())))?;
        let p = self.path(app);
        let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?;
        writeln!(f, "{hex}")?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_kept_in_a_shared_directory() {
        let e = Credentials::from_env(None, None, None, None).unwrap_err();
        assert!(e.to_string().contains("no state directory"), "{e}");
        let empty = Some(std::ffi::OsString::new());
        assert!(Credentials::from_env(None, empty.clone(), empty.clone(), empty).is_err());
        let c = Credentials::from_env(None, None, None, Some("/home/u".into())).unwrap();
        assert_eq!(
            c.dir(),
            std::path::Path::new("/home/u/.local/state/hitless")
        );
        let c =
            Credentials::from_env(None, None, Some("/s".into()), Some("/home/u".into())).unwrap();
        assert_eq!(c.dir(), std::path::Path::new("/s/hitless"));
    }

    #[test]
    fn saved_secrets_load_back_and_garbage_is_refused() {
        let dir = std::env::temp_dir().join(format!("hitless-creds-{}", std::process::id()));
        let c = Credentials::new(Some(dir.clone())).unwrap();
        assert_eq!(c.load(3).unwrap(), None);
        assert_eq!(c.apps().unwrap(), Vec::<u32>::new());
        let s = [0xA5u8; SECRET_BYTES];
        c.save(40, &s).unwrap();
        let p = c.save(3, &s).unwrap();
        std::fs::write(dir.join("app-x.secret"), "not an application").unwrap();
        assert_eq!(c.load(3).unwrap(), Some(s));
        assert_eq!(c.apps().unwrap(), vec![3, 40]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&p, "not hex").unwrap();
        assert!(c.load(3).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
