//! Print the image manager's benchmark lines (`name = value`), as
//! `cargo xtask bench` does: `cargo run --release -p hitless-image --example image_bench`.
fn main() -> Result<(), hitless_image::ImageError> {
    for (name, value) in hitless_image::bench::bench_lines()? {
        println!("{name} = {value}");
    }
    Ok(())
}
