//! One cycle at a time: an advisory lock per store (`<store>.lock`, flock), held for the
//! duration of a cycle or a push by whoever runs it (the daemon, `run --once`, `task --now`).
//! The holder writes its pid into the file so a refused caller can name it. The kernel releases
//! the lock when its holder dies, so a lock left by a killed process never blocks.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The exit code of a one-shot that could not get the lock (EX_TEMPFAIL).
pub const EXIT_BUSY: u8 = 75;

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
}

/// Someone else holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("the store {} is busy: {} holds its lock (a cycle or push is running); try again later, or use --wait SECS", store.display(), holder.map_or_else(|| "another huoltosync process".to_owned(), |p| format!("pid {p}")))]
pub struct Busy {
    pub store: PathBuf,
    pub holder: Option<u32>,
}

fn lock_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl StoreLock {
    /// Takes the lock now, or says who holds it.
    pub fn try_acquire(store: &Path) -> anyhow::Result<Result<StoreLock, Busy>> {
        let path = lock_path(store);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", std::process::id())?;
                file.flush()?;
                Ok(Ok(StoreLock { file, path }))
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Ok(Err(Busy {
                    store: store.to_owned(),
                    holder: text.trim().parse().ok(),
                }))
            }
            Err(TryLockError::Error(e)) => {
                Err(anyhow::anyhow!("cannot lock {}: {e}", path.display()))
            }
        }
    }

    /// Takes the lock, waiting up to `wait` for it.
    pub async fn acquire(store: &Path, wait: Duration) -> anyhow::Result<Result<StoreLock, Busy>> {
        let started = Instant::now();
        loop {
            match Self::try_acquire(store)? {
                Ok(lock) => return Ok(Ok(lock)),
                Err(busy) if started.elapsed() >= wait => return Ok(Err(busy)),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.db");
        let first = StoreLock::try_acquire(&store).unwrap().unwrap();
        let busy = StoreLock::try_acquire(&store).unwrap().unwrap_err();
        assert_eq!(busy.holder, Some(std::process::id()));
        assert!(
            busy.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
        drop(first);
        assert!(StoreLock::try_acquire(&store).unwrap().is_ok());
    }
}
