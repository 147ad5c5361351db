use clap::Parser;

/// The Weir driver process.
#[derive(Parser)]
#[command(name = "weir-driver", version, about)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {} = Args::parse();
    weir_common::telemetry::init();
    weir_driver::run(weir_common::shutdown::signal()).await
}
