fn main() -> std::process::ExitCode {
    provenance_gate::cli::run(std::env::args_os())
}
