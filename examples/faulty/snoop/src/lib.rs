//! An operator that tries to reach outside its sandbox (files, environment, wall clock, network)
//! and emits what it found, one record per probe: shows what a guest can and cannot see.

use weir_guest_sdk::prelude::*;

pub struct Snoop;

fn probes() -> Vec<(&'static str, String)> {
    let files = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("refused: {e}"),
    };
    let read = match std::fs::read_to_string("/etc/passwd") {
        Ok(_) => "read /etc/passwd".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    let env = format!("{} variables", std::env::vars().count());
    let clock = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => format!("{} s since the epoch", d.as_secs()),
        Err(e) => format!("before the epoch: {e}"),
    };
    let net = match std::net::TcpStream::connect("127.0.0.1:9") {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    vec![
        ("files", files),
        ("read", read),
        ("env", env),
        ("clock", clock),
        ("net", net),
    ]
}

impl Operator for Snoop {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Snoop)
    }

    fn process(&mut self, _ctx: &mut Context, _record: Record<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        for (probe, found) in probes() {
            ctx.emit(probe, format!("{probe}: {found}"));
        }
        Ok(())
    }
}

export_operator!(Snoop);
