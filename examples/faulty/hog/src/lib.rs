//! An operator that allocates without bound: shows that the per-instance memory limit stops it.

use weir_guest_sdk::prelude::*;

pub struct Hog {
    hoard: Vec<Vec<u8>>,
}

impl Operator for Hog {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Hog { hoard: Vec::new() })
    }

    fn process(&mut self, _ctx: &mut Context, _record: Record<'_>) -> Result<(), Error> {
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            chunk[0] = 1;
            self.hoard.push(chunk);
        }
    }
}

export_operator!(Hog);
