fn main() -> std::process::ExitCode {
    till360_agent::cli::main_with_args(std::env::args_os())
}
