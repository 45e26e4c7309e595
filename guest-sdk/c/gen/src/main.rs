//! `weir-c-gen WIT_DIR OUT_DIR`: writes the generated parts of the C guest SDK (see the library).

use anyhow::{Result, bail};
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wit, out] = args.as_slice() else {
        bail!("usage: weir-c-gen WIT_DIR OUT_DIR");
    };
    weir_c_gen::generate(Path::new(wit), Path::new(out))
}
