//! Benchmark: hybrid (Ed25519 + ML-DSA-65) sign and verify, median per operation, next to each
//! half alone. Run with `cargo bench -p identity --bench hybrid`.

use std::time::Instant;

use identity::KeySet;

const ROUNDS: usize = 2000;

fn median_us(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn time(mut operation: impl FnMut()) -> f64 {
    let samples = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            operation();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median_us(samples)
}

fn main() {
    let keys = KeySet::generate().expect("keys");
    let message = vec![0x5au8; 1024];
    let signature = keys.sign(&message).expect("sign");
    let ed_signature = keys.sign_ed25519(&message);
    let sign = time(|| {
        std::hint::black_box(keys.sign(&message).expect("sign"));
    });
    let verify = time(|| {
        keys.public().verify(&message, &signature).expect("verify");
    });
    let ed_sign = time(|| {
        std::hint::black_box(keys.sign_ed25519(&message));
    });
    let ed_verify = time(|| {
        keys.public()
            .verify_ed25519(&message, &ed_signature)
            .expect("verify");
    });
    let keygen = {
        let samples = (0..200)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(KeySet::generate().expect("keys"));
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        median_us(samples)
    };
    println!("hybrid Ed25519+ML-DSA-65, 1 KiB message, median of {ROUNDS}:");
    println!(
        "  hybrid sign     {sign:8.1} us   (signature {} bytes)",
        signature.len()
    );
    println!("  hybrid verify   {verify:8.1} us");
    println!("  Ed25519 sign    {ed_sign:8.1} us   (OGM signatures use this half only)");
    println!("  Ed25519 verify  {ed_verify:8.1} us");
    println!("  key set generation {keygen:8.1} us (median of 200)");
}
