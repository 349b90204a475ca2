use hitless_sim::{CardTiming, SimCard};
use std::time::Instant;
fn main() {
    let mut card = SimCard::new(CardTiming::default());
    let t = Instant::now();
    let n: u64 = std::env::var("CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    card.run(n);
    println!("idle: {:.0} cycles/s", n as f64 / t.elapsed().as_secs_f64());
}
