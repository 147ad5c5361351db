//! Compiles `weir/v1/*.proto` into `OUT_DIR`; nothing generated is committed.
//! Needs `protoc` (Debian's `protobuf-compiler`, installed by `deploy/local/services.sh install`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["weir/v1/checkpoint.proto", "weir/v1/executor.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .compile_protos(&protos, &["."])
        .map_err(|e| format!("compiling weir.v1 protos failed (is protoc installed? run deploy/local/services.sh install): {e}").into())
}
