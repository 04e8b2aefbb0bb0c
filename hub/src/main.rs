fn main() -> std::process::ExitCode {
    till360_hub::cli::main_with_args(std::env::args_os())
}
