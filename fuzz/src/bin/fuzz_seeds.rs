//! Writes the seeds of a target into a directory, AFL++'s `-i`: `fuzz-seeds TARGET DIR`.

fn main() -> std::io::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [target, directory] = arguments.as_slice() else {
        eprintln!("usage: fuzz-seeds TARGET DIR");
        std::process::exit(2);
    };
    let seeds = provenance_gate_fuzz::seeds(target);
    if seeds.is_empty() {
        eprintln!("no target {target:?}");
        std::process::exit(2);
    }
    std::fs::create_dir_all(directory)?;
    for (name, bytes) in seeds {
        std::fs::write(std::path::Path::new(directory).join(name), bytes)?;
    }
    Ok(())
}
