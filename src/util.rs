//! Small helpers with no better home.

/// Compares two byte strings in time that depends only on their lengths, for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 of `"{t}.{body}"` keyed with `secret`: the `v1` signature of Stripe's webhooks,
/// which our own alert webhooks use too.
pub fn timestamped_mac(secret: &str, t: i64, body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
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

/// JSON equality where numbers compare by value: PostgreSQL's `jsonb` gives `1e16` back as
/// `10000000000000000`, which `serde_json` would call a different value.
pub fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The path (`name`, `items[3].metric`) of the first string or key holding a NUL character.
/// PostgreSQL cannot store U+0000 in text or `jsonb`, so such input is refused up front, the
/// same way on both databases.
pub fn find_nul(v: &serde_json::Value, path: &mut String) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find_nul(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let found = k.contains('\0') || find_nul(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

/// For PATCH bodies: `Some(None)` when the field is present as `null`, `None` when it is
/// absent. Use with `#[serde(default, deserialize_with = "crate::util::present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Gives the allocator's freed pages back to the operating system. glibc keeps freed heap
/// mapped (it trims only the top of each arena), so what start-up allocates and drops again
/// would otherwise stay resident for the life of the process. A no-op on other allocators.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; any pointer held
    // elsewhere stays valid.
    unsafe {
        libc::malloc_trim(0);
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

    #[test]
    fn json_numbers_compare_by_value_and_nul_is_found_by_path() {
        use serde_json::json;
        assert!(super::json_eq(&json!({"a": [1e16, 2]}), &json!({"a": [10000000000000000u64, 2]})));
        assert!(!super::json_eq(&json!({"a": 1.5}), &json!({"a": 1})));
        assert!(!super::json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        let mut path = String::new();
        assert!(super::find_nul(&json!({"items": [{"m": "ok"}, {"m": "x\u{0}y"}]}), &mut path));
        assert_eq!(path, "items[1].m");
        let mut path = String::new();
        assert!(!super::find_nul(&json!({"a": ["b"]}), &mut path));
    }
}
