//! The power cut at every program/erase (issue 18, item 10).
use hitless_image::bench::powercut_sweep;

#[test]
fn power_cut_at_every_flash_operation_boots_old_or_new() {
    let s = powercut_sweep().unwrap();
    for (op, n) in &s.per_operation {
        println!("{op}: {n} cut points");
        assert!(*n > 0, "{op} did no flash operation");
    }
    println!("image_powercut_points = {}", s.points);
    println!("image_bricked = {}", s.bricked);
    assert_eq!(
        s.points,
        s.per_operation.iter().map(|(_, n)| n).sum::<u64>()
    );
    assert_eq!(s.per_operation.len(), 10);
    assert!(s.failures.is_empty(), "{:#?}", s.failures);
    assert_eq!(s.bricked, 0);
    assert_eq!(s.failed_repeats, 0);
}
