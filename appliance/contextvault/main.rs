//! `contextvault`: the whole appliance in one binary. See `lib.rs`.

fn main() -> std::process::ExitCode {
    contextvault::main()
}
