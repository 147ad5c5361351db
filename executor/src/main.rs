use clap::Parser;
use weir_executor::TransformRegistry;
use weir_executor::cli::ExecutorArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = ExecutorArgs::parse();
    weir_common::telemetry::init();
    let options = match args.into_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("weir-executor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match weir_executor::run(options, TransformRegistry::new(), weir_common::shutdown::signal())
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-executor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
