// A review allocates and frees many small objects (its JSON tree, the answer); mimalloc
// serves them faster than glibc's allocator (BENCHMARKS.md, "Where the misses come from").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    provenance_gate::cli::run(std::env::args_os())
}
