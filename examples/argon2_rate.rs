//! The raw argon2id rate with the server's parameters: the limit that `POST /auth/login` is
//! measured against in `bench/`. It runs one verifying thread per core at once, as a loaded
//! server does (the cores then share memory bandwidth and caches), and prints verifications per
//! second per core. Each thread hashes in the working memory the server's hashing threads use
//! (`password::Memory`: huge pages where the kernel grants them), so the limit is the primitive
//! at its fastest, not a slower one the server beats.
//!
//! `cargo run --release --example argon2_rate -- [seconds] [threads]`

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use mash::auth::password::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, Memory};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let threads: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                // The primitive at its fastest: one working memory per thread, reused, and
                // nothing else (no parsing, no encoding) around the hash itself.
                let mut memory = Memory::for_params(&params);
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let (salt, mut out) = ([7u8; 16], [0u8; 32]);
                let mut once = || {
                    argon
                        .hash_password_into_with_memory(
                            b"bench passphrase 2026",
                            &salt,
                            &mut out,
                            memory.blocks_for(&params),
                        )
                        .unwrap()
                };
                once();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_secs_f64(secs) {
                    once();
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let total: f64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{:.2}", total / threads as f64);
}
