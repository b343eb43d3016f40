//! The outbound direction alone: a command becomes a vendor request, the vendor's answer an
//! event or a refusal by status.

use dragoman_guest::{Command, Error, Event, Outbound, Plugin, PluginInfo, Request, Response};

struct Carrier;

impl Plugin for Carrier {
    fn info() -> PluginInfo {
        PluginInfo::new("outbound-only", "0.0.1", "carrier/v1")
    }
}

impl Outbound for Carrier {
    fn encode(command: &Command) -> Result<Request, Error> {
        let data: serde_json::Value = command.parse()?;
        Request::new("post", format!("/shipments/{}", command.subject))
            .header(
                "x-carrier-account",
                dragoman_guest::config::get("account").unwrap_or_default(),
            )
            .json(&data)
    }

    fn decode(command: &Command, response: &Response) -> Result<Vec<Event>, Error> {
        match response.status {
            200..=299 => {
                let body = response.decode()?.value;
                Ok(vec![Event::json(
                    "shipment.booked.v1",
                    &command.subject,
                    &body,
                )?])
            }
            500..=599 => Err(Error::transient(
                "carrier-unavailable",
                format!("status {}", response.status),
            )),
            status => Err(Error::rejected(
                "carrier-refused",
                format!("status {status}"),
            )),
        }
    }
}

dragoman_guest::export!(Carrier: outbound);
