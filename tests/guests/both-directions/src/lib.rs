//! Both directions in one component.

use dragoman_guest::{Command, Error, Event, Inbound, Message, Outbound, Plugin, PluginInfo};
use dragoman_guest::{Request, Response};

struct Both;

impl Plugin for Both {
    fn info() -> PluginInfo {
        PluginInfo::new("both-directions", "0.0.1", "test")
    }
}

impl Inbound for Both {
    fn idempotency_key(message: &Message) -> Option<String> {
        message
            .header("x-request-id")
            .map(|id| format!("request-{id}"))
    }

    /// One event whose data is the names of the headers the plugin was given: what a test
    /// reads to see which headers reach a plugin.
    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let names: Vec<String> = message
            .headers()
            .iter()
            .map(|h| h.name.to_ascii_lowercase())
            .collect();
        Ok(vec![Event::json("inbound.seen.v1", message.id(), &names)?])
    }
}

impl Outbound for Both {
    fn encode(command: &Command) -> Result<Request, Error> {
        Ok(Request::new("get", format!("/things/{}", command.subject)))
    }

    fn decode(command: &Command, response: &Response) -> Result<Vec<Event>, Error> {
        Ok(vec![Event::json(
            "outbound.answered.v1",
            &command.subject,
            &response.status,
        )?])
    }
}

dragoman_guest::export!(Both: inbound, outbound);
