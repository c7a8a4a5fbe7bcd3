//! Holds N live workers' status files in DIR (this process owns their locks) until
//! stdin closes. Used by `benches/compare-perl.sh` to give Perl's `read_all` the same
//! directory the Rust readers are measured on.
//!
//! ```text
//! cargo run --release -p scoreboard --example live_workers -- DIR 1000
//! ```

#[path = "../benches/support/fixture.rs"]
mod fixture;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: live_workers DIR COUNT".into());
    };
    let _held = fixture::live_workers(dir.as_ref(), count.parse()?)?;
    println!("ready");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}
