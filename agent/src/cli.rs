//! TODO: command line (`run`, `status`).
use std::ffi::OsString;
use std::process::ExitCode;

pub fn main_with_args(_args: impl IntoIterator<Item = OsString>) -> ExitCode {
    ExitCode::FAILURE
}
