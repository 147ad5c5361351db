use weir_executor::TransformRegistry;

/// The stock executor: the built-in transforms only. An executor with your own transforms is the
/// same `main` with a registry (see `examples/custom_transform.rs`).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    weir_executor::cli::main(TransformRegistry::new()).await
}
