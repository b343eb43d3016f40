//! Tries to reach outside the sandbox and reports what it got.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

impl Inbound for Guest {
    fn translate(_message: &Message) -> Result<Vec<Event>, Error> {
        let report = [
            (
                "read_dir_root",
                std::fs::read_dir("/")
                    .map(|_| "granted".to_owned())
                    .unwrap_or_else(|e| format!("denied: {e}")),
            ),
            (
                "read_file",
                std::fs::read("/etc/hostname")
                    .map(|_| "granted".to_owned())
                    .unwrap_or_else(|e| format!("denied: {e}")),
            ),
            ("env_vars", format!("{}", std::env::vars().count())),
            ("args", format!("{}", std::env::args().count())),
            (
                "tcp_connect",
                std::net::TcpStream::connect("127.0.0.1:4222")
                    .map(|_| "granted".to_owned())
                    .unwrap_or_else(|e| format!("denied: {e}")),
            ),
            (
                "config_probe",
                dragoman_guest::config::get("probe").unwrap_or_default(),
            ),
        ];
        let report: std::collections::BTreeMap<&str, String> = report.into_iter().collect();
        println!("probe finished");
        dragoman_guest::log::event(
            dragoman_guest::log::Level::Info,
            "probe report",
            &[("entries", "6")],
        );
        Ok(vec![Event::json("probe.v1", "probe", &report)?])
    }
}

dragoman_guest::export!(Guest: inbound);
