use clap::Parser;

/// The Weir executor process.
#[derive(Parser)]
#[command(name = "weir-executor", version, about)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {} = Args::parse();
    weir_common::telemetry::init();
    weir_executor::run(weir_common::shutdown::signal()).await
}
