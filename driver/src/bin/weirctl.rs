//! `weirctl`: see `weir_driver::ctl`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_driver::ctl::main().await
}
