//! Small helpers with no better home.

/// Compares two byte strings in time that depends only on their lengths, for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a file only its owner can read (keys, secrets), replacing any previous content.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    file.write_all(contents).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    file.sync_all().map_err(|e| anyhow::anyhow!("syncing {}: {e}", path.display()))?;
    Ok(())
}

/// Reads `path`, or creates it with `make()` when it does not exist yet. Creation is atomic and
/// first-wins (written to a private temporary file, then hard-linked into place), so processes
/// or tasks starting at the same moment all end up with the same contents, never a torn file.
pub fn read_or_create_private(
    path: &std::path::Path,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<(String, bool)> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok((existing, false));
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
    write_private_file(&tmp, make()?.as_bytes())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((std::fs::read_to_string(path)?, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((std::fs::read_to_string(path)?, false)),
        Err(e) => Err(anyhow::anyhow!("creating {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
