//! A page store in a directory: pages and versions as files, each commit
//! made atomic by renaming one manifest file into place.
//!
//! Layout:
//! - `meta`: page size, page count, versions kept;
//! - `lock`: held with flock(2) by the one process using the store;
//! - `staged/<page>`: the open transaction's staged pages;
//! - `blobs/<page>.<version>`: page contents committed in a version;
//! - `v<version>.man`: a version's manifest (state, page → blob map, checksum).
//!
//! Commit: hard-link each staged page to its blob, write the manifest to a
//! temporary file, fsync it, rename it to `v<N>.man`, fsync the directory;
//! only then drop the staged files and the versions beyond K. A crash before
//! the rename leaves the previous versions untouched (the orphaned blobs are
//! collected at the next open); after it, version N is complete. Opening a
//! store starts a new transaction on its newest version: pages staged but
//! not committed by an earlier process are dropped, as after a crash.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::store::{check_geometry, check_page, PageStore, VersionInfo};

const MAGIC: &[u8; 8] = b"HHEAPV1\n";
const META_MAGIC: &[u8; 8] = b"HHEAPM1\n";

#[derive(Debug, Clone)]
struct Manifest {
    info: VersionInfo,
    state: Vec<u8>,
    /// page → the version whose blob holds it
    pages: BTreeMap<u64, u64>,
}

/// A page store in a directory (see the module docs for its layout).
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    page_size: usize,
    heap_pages: u64,
    keep: usize,
    /// Kept versions, oldest first.
    versions: VecDeque<VersionInfo>,
    base: Option<Manifest>,
    staged: BTreeSet<u64>,
    _lock: File,
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Write `data` to `path` atomically: temporary file, fsync, rename, fsync dir.
fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn take_u64(buf: &[u8], pos: &mut usize) -> Result<u64, StoreError> {
    let end = pos
        .checked_add(8)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| StoreError::Corrupt("manifest truncated".into()))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[*pos..end]);
    *pos = end;
    Ok(u64::from_le_bytes(a))
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.state.len() + 16 * self.pages.len());
        b.extend_from_slice(MAGIC);
        for v in [self.info.version, self.info.pages, self.state.len() as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.state);
        b.extend_from_slice(&(self.pages.len() as u64).to_le_bytes());
        for (p, v) in &self.pages {
            b.extend_from_slice(&p.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        let sum = fnv(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    fn decode(buf: &[u8]) -> Result<Manifest, StoreError> {
        if buf.len() < MAGIC.len() + 8 || &buf[..8] != MAGIC {
            return Err(StoreError::Corrupt("manifest magic".into()));
        }
        let body = &buf[..buf.len() - 8];
        let mut pos = buf.len() - 8;
        if take_u64(buf, &mut pos)? != fnv(body) {
            return Err(StoreError::Corrupt("manifest checksum".into()));
        }
        let mut pos = 8;
        let version = take_u64(body, &mut pos)?;
        let pages_written = take_u64(body, &mut pos)?;
        let state_len = take_u64(body, &mut pos)?;
        let end = usize::try_from(state_len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= body.len())
            .ok_or_else(|| StoreError::Corrupt("manifest state length".into()))?;
        let state = body[pos..end].to_vec();
        pos = end;
        let n = take_u64(body, &mut pos)?;
        let mut pages = BTreeMap::new();
        for _ in 0..n {
            let p = take_u64(body, &mut pos)?;
            let v = take_u64(body, &mut pos)?;
            pages.insert(p, v);
        }
        Ok(Manifest {
            info: VersionInfo {
                version,
                pages: pages_written,
                state_len,
            },
            state,
            pages,
        })
    }
}

impl DirStore {
    /// Open the store in `dir`, creating it if absent. An existing store must
    /// have the same page size and page count. Fails if another process (or
    /// another `DirStore` in this one) has it open.
    pub fn open(
        dir: impl AsRef<Path>,
        page_size: usize,
        heap_pages: u64,
        keep: usize,
    ) -> Result<DirStore, StoreError> {
        check_geometry(page_size, heap_pages)?;
        if keep == 0 {
            return Err(StoreError::Config("keep at least one version".into()));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("staged"))?;
        fs::create_dir_all(dir.join("blobs"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Io(std::io::Error::last_os_error()));
        }
        let meta_path = dir.join("meta");
        let mut meta = Vec::new();
        meta.extend_from_slice(META_MAGIC);
        meta.extend_from_slice(&(page_size as u64).to_le_bytes());
        meta.extend_from_slice(&heap_pages.to_le_bytes());
        match fs::read(&meta_path) {
            Ok(existing) => {
                if existing != meta {
                    return Err(StoreError::Config(format!(
                        "{} holds a store of another geometry",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&dir, &meta_path, &meta)?
            }
            Err(e) => return Err(e.into()),
        }
        let mut s = DirStore {
            dir,
            page_size,
            heap_pages,
            keep,
            versions: VecDeque::new(),
            base: None,
            staged: BTreeSet::new(),
            _lock: lock,
        };
        s.recover()?;
        Ok(s)
    }

    fn manifest_path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("v{version:020}.man"))
    }

    fn blob_path(&self, page: u64, version: u64) -> PathBuf {
        self.dir.join("blobs").join(format!("{page}.{version}"))
    }

    fn staged_path(&self, page: u64) -> PathBuf {
        self.dir.join("staged").join(page.to_string())
    }

    fn load(&self, version: u64) -> Result<Manifest, StoreError> {
        match fs::read(self.manifest_path(version)) {
            Ok(b) => Manifest::decode(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NoSuchVersion(version))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Start a new transaction on the newest version: drop staged pages and
    /// temporary files, list the versions, collect unreferenced blobs.
    fn recover(&mut self) -> Result<(), StoreError> {
        for e in fs::read_dir(self.dir.join("staged"))? {
            fs::remove_file(e?.path())?;
        }
        let mut found = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                fs::remove_file(self.dir.join(&*name))?;
            } else if let Some(v) = name
                .strip_prefix('v')
                .and_then(|n| n.strip_suffix(".man"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push(v);
            }
        }
        found.sort_unstable();
        // A crash between a commit point and the removal of the versions
        // beyond K leaves too many: finish that removal.
        while found.len() > self.keep {
            let old = found.remove(0);
            fs::remove_file(self.manifest_path(old))?;
        }
        self.versions.clear();
        for &v in &found {
            self.versions.push_back(self.load(v)?.info);
        }
        self.base = match found.last() {
            Some(&v) => Some(self.load(v)?),
            None => None,
        };
        self.staged.clear();
        self.gc()
    }

    /// Remove blobs no kept version refers to.
    fn gc(&mut self) -> Result<(), StoreError> {
        let mut live = BTreeSet::new();
        for info in &self.versions {
            let m = self.load(info.version)?;
            live.extend(m.pages);
        }
        for e in fs::read_dir(self.dir.join("blobs"))? {
            let path = e?.path();
            let key = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
                .and_then(|(p, v)| Some((p.parse::<u64>().ok()?, v.parse::<u64>().ok()?)));
            match key {
                Some(k) if live.contains(&k) => {}
                _ => fs::remove_file(&path)?,
            }
        }
        Ok(())
    }

    fn read_file_into(path: &Path, buf: &mut [u8]) -> Result<(), StoreError> {
        let mut f = File::open(path)?;
        f.read_exact(buf)?;
        let mut extra = [0u8; 1];
        if f.read(&mut extra)? != 0 {
            return Err(StoreError::Corrupt(format!("{} too long", path.display())));
        }
        Ok(())
    }
}

impl PageStore for DirStore {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn heap_pages(&self) -> u64 {
        self.heap_pages
    }

    fn read_page(&mut self, page: u64, buf: &mut [u8]) -> Result<bool, StoreError> {
        check_page(page, self.heap_pages, buf.len(), self.page_size)?;
        if self.staged.contains(&page) {
            Self::read_file_into(&self.staged_path(page), buf)?;
            return Ok(true);
        }
        if let Some(v) = self.base.as_ref().and_then(|b| b.pages.get(&page)) {
            Self::read_file_into(&self.blob_path(page, *v), buf)?;
            return Ok(true);
        }
        buf.fill(0);
        Ok(false)
    }

    fn stage_pages(&mut self, pages: &[(u64, &[u8])]) -> Result<(), StoreError> {
        for (page, data) in pages {
            check_page(*page, self.heap_pages, data.len(), self.page_size)?;
        }
        let staged_dir = self.dir.join("staged");
        for (page, data) in pages {
            let path = self.staged_path(*page);
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
        }
        sync_dir(&staged_dir)?;
        for (page, _) in pages {
            self.staged.insert(*page);
        }
        Ok(())
    }

    fn commit(&mut self, app_state: &[u8]) -> Result<VersionInfo, StoreError> {
        let version = self
            .versions
            .back()
            .map(|v| v.version)
            .unwrap_or(0)
            .max(self.base.as_ref().map(|b| b.info.version).unwrap_or(0))
            + 1;
        let mut pages = self
            .base
            .as_ref()
            .map(|b| b.pages.clone())
            .unwrap_or_default();
        for &page in &self.staged {
            let blob = self.blob_path(page, version);
            // A blob of an earlier, uncommitted attempt at this version.
            let _ = fs::remove_file(&blob);
            fs::hard_link(self.staged_path(page), &blob)?;
            pages.insert(page, version);
        }
        sync_dir(&self.dir.join("blobs"))?;
        let m = Manifest {
            info: VersionInfo {
                version,
                pages: self.staged.len() as u64,
                state_len: app_state.len() as u64,
            },
            state: app_state.to_vec(),
            pages,
        };
        // The commit point.
        write_atomic(&self.dir, &self.manifest_path(version), &m.encode())?;
        let info = m.info;
        self.versions.push_back(info);
        self.base = Some(m);
        for page in std::mem::take(&mut self.staged) {
            let _ = fs::remove_file(self.staged_path(page));
        }
        while self.versions.len() > self.keep {
            if let Some(old) = self.versions.pop_front() {
                fs::remove_file(self.manifest_path(old.version))?;
            }
        }
        sync_dir(&self.dir)?;
        self.gc()?;
        Ok(info)
    }

    fn abort(&mut self) -> Result<(), StoreError> {
        for page in std::mem::take(&mut self.staged) {
            fs::remove_file(self.staged_path(page))?;
        }
        Ok(())
    }

    fn versions(&mut self) -> Result<Vec<VersionInfo>, StoreError> {
        Ok(self.versions.iter().copied().collect())
    }

    fn checkout(&mut self, version: u64) -> Result<Vec<u8>, StoreError> {
        if !self.versions.iter().any(|v| v.version == version) {
            return Err(StoreError::NoSuchVersion(version));
        }
        let m = self.load(version)?;
        self.abort()?;
        let state = m.state.clone();
        self.base = Some(m);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hitless-heap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dirstore_commit_checkout_and_reopen() -> Result<(), StoreError> {
        let d = tmpdir("ds");
        let ps = 4096;
        let mut s = DirStore::open(&d, ps, 8, 2)?;
        let a = vec![1u8; ps];
        let b = vec![2u8; ps];
        let mut buf = vec![0u8; ps];
        assert!(!s.read_page(3, &mut buf)?);
        s.stage_pages(&[(3, &a)])?;
        assert!(s.read_page(3, &mut buf)?);
        assert_eq!(buf, a);
        let v1 = s.commit(b"one")?;
        s.stage_pages(&[(3, &b), (4, &b)])?;
        let v2 = s.commit(b"two")?;
        assert_eq!(v2.pages, 2);
        s.stage_pages(&[(5, &a)])?;
        let v3 = s.commit(b"three")?;
        // K = 2: v1 dropped.
        assert_eq!(s.versions()?, vec![v2, v3]);
        assert!(matches!(
            s.checkout(v1.version),
            Err(StoreError::NoSuchVersion(_))
        ));
        assert_eq!(s.checkout(v2.version)?, b"two");
        s.read_page(5, &mut buf)?;
        assert_eq!(buf, vec![0u8; ps]);
        s.read_page(3, &mut buf)?;
        assert_eq!(buf, b);
        // Staged but not committed, then "crash" (drop + reopen).
        s.stage_pages(&[(6, &a)])?;
        drop(s);
        let mut s = DirStore::open(&d, ps, 8, 2)?;
        assert!(!s.read_page(6, &mut buf)?);
        // Reopened on the newest version.
        s.read_page(5, &mut buf)?;
        assert_eq!(buf, a);
        assert!(
            DirStore::open(&d, ps, 8, 2).is_err(),
            "second opener must be refused"
        );
        drop(s);
        assert!(DirStore::open(&d, 8192, 8, 2).is_err(), "geometry mismatch");
        let _ = fs::remove_dir_all(&d);
        Ok(())
    }

    #[test]
    fn dirstore_crash_mid_commit_keeps_the_previous_versions() -> Result<(), StoreError> {
        let d = tmpdir("mid");
        let ps = 4096;
        let a = vec![7u8; ps];
        let mut s = DirStore::open(&d, ps, 4, 2)?;
        s.stage_pages(&[(1, &a)])?;
        let v1 = s.commit(b"one")?;
        // What a crash during the next commit can leave: a staged page, its
        // blob linked for version 2, a half-written manifest.
        s.stage_pages(&[(2, &a)])?;
        fs::hard_link(s.staged_path(2), s.blob_path(2, 2))?;
        fs::write(
            s.manifest_path(2).with_extension("tmp"),
            b"HHEAPV1\npartial",
        )?;
        drop(s);
        let mut s = DirStore::open(&d, ps, 4, 2)?;
        assert_eq!(s.versions()?, vec![v1]);
        let mut buf = vec![0u8; ps];
        assert!(!s.read_page(2, &mut buf)?, "uncommitted page visible");
        assert!(s.read_page(1, &mut buf)?);
        assert!(!s.blob_path(2, 2).exists(), "orphaned blob kept");
        assert!(!s.manifest_path(2).with_extension("tmp").exists());
        // The next commit is a complete version 2.
        s.stage_pages(&[(3, &a)])?;
        let v2 = s.commit(b"two")?;
        assert_eq!(v2.version, 2);
        assert_eq!(v2.pages, 1);
        // A corrupt manifest is reported, not trusted.
        drop(s);
        let m = d.join(format!("v{:020}.man", 2));
        let mut bytes = fs::read(&m)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&m, bytes)?;
        assert!(matches!(
            DirStore::open(&d, ps, 4, 2),
            Err(StoreError::Corrupt(_))
        ));
        let _ = fs::remove_dir_all(&d);
        Ok(())
    }
}
