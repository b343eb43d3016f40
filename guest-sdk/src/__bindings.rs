//! The generated bindings and the adapter that forwards them to the SDK's traits.
//! Nothing here is for plugin authors: the `export!` macro uses it.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use core::marker::PhantomData;

// The contract's worlds each export two interfaces, and a world's export macro exports all of
// them; generating two worlds that export the same interface would define its export macro
// twice. So the SDK generates one building-block world per exported interface, and the
// `export!` macro combines them: the union of `metadata-part` and `inbound-part` is the
// contract's `inbound-translator` world, and so on.

/// Bindings of the metadata export; the shared imports (types, log, config) live here and the
/// other parts reuse them.
pub mod metadata {
    wit_bindgen::generate!({
        inline: "
            package dragoman:guest-sdk;
            world metadata-part {
                import dragoman:translator/log@0.1.0;
                import dragoman:translator/config@0.1.0;
                export dragoman:translator/metadata@0.1.0;
            }
        ",
        path: "../wit",
        world: "dragoman:guest-sdk/metadata-part",
        runtime_path: "crate::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_metadata",
        default_bindings_module: "dragoman_guest::__bindings::metadata",
        generate_all,
    });
}

/// Bindings of the inbound export.
pub mod inbound {
    wit_bindgen::generate!({
        inline: "
            package dragoman:guest-sdk;
            world inbound-part {
                import dragoman:translator/log@0.1.0;
                import dragoman:translator/config@0.1.0;
                export dragoman:translator/inbound@0.1.0;
            }
        ",
        path: "../wit",
        world: "dragoman:guest-sdk/inbound-part",
        runtime_path: "crate::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_inbound",
        default_bindings_module: "dragoman_guest::__bindings::inbound",
        with: {
            "dragoman:translator/types@0.1.0": crate::__bindings::metadata::dragoman::translator::types,
            "dragoman:translator/log@0.1.0": crate::__bindings::metadata::dragoman::translator::log,
            "dragoman:translator/config@0.1.0": crate::__bindings::metadata::dragoman::translator::config,
        },
    });
}

/// Bindings of the outbound export.
pub mod outbound {
    wit_bindgen::generate!({
        inline: "
            package dragoman:guest-sdk;
            world outbound-part {
                import dragoman:translator/log@0.1.0;
                import dragoman:translator/config@0.1.0;
                export dragoman:translator/outbound@0.1.0;
            }
        ",
        path: "../wit",
        world: "dragoman:guest-sdk/outbound-part",
        runtime_path: "crate::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_outbound",
        default_bindings_module: "dragoman_guest::__bindings::outbound",
        with: {
            "dragoman:translator/types@0.1.0": crate::__bindings::metadata::dragoman::translator::types,
            "dragoman:translator/log@0.1.0": crate::__bindings::metadata::dragoman::translator::log,
            "dragoman:translator/config@0.1.0": crate::__bindings::metadata::dragoman::translator::config,
        },
    });
}

/// Bindings of the projector contract, a package of its own (`wit/projector/`).
pub mod projector {
    wit_bindgen::generate!({
        path: "../wit/projector",
        world: "dragoman:projector/projector",
        runtime_path: "crate::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_projector",
        default_bindings_module: "dragoman_guest::__bindings::projector",
    });
}

pub use self::inbound::__export_inbound;
pub use self::metadata::__export_metadata;
pub use self::outbound::__export_outbound;
pub use self::projector::__export_projector;

pub(crate) use self::metadata::dragoman::translator::types as wit;

use crate::{Command, Event, Inbound, Message, Outbound, Plugin, Response};

/// Implements the generated export traits for any type that implements the SDK's traits.
pub struct Adapter<T>(PhantomData<T>);

fn info<T: Plugin>() -> wit::PluginInfo {
    let info = T::info();
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        vendor_api_version: info.vendor_api_version,
    }
}

fn events(
    result: Result<Vec<Event>, crate::Error>,
) -> Result<Vec<wit::DomainEvent>, wit::TranslateError> {
    result
        .map(|events| events.into_iter().map(Event::into_wit).collect())
        .map_err(crate::Error::into_wit)
}

fn key<T: Inbound>(message: wit::VendorMessage) -> Option<String> {
    T::idempotency_key(&Message::from_wit(message))
}

fn translate<T: Inbound>(
    message: wit::VendorMessage,
) -> Result<Vec<wit::DomainEvent>, wit::TranslateError> {
    events(T::translate(&Message::from_wit(message)))
}

fn encode<T: Outbound>(
    command: wit::DomainCommand,
) -> Result<wit::VendorRequest, wit::TranslateError> {
    T::encode(&Command::from_wit(command))
        .map(crate::Request::into_wit)
        .map_err(crate::Error::into_wit)
}

fn decode<T: Outbound>(
    command: wit::DomainCommand,
    response: wit::VendorResponse,
) -> Result<Vec<wit::DomainEvent>, wit::TranslateError> {
    events(T::decode(
        &Command::from_wit(command),
        &Response::from_wit(response),
    ))
}

macro_rules! impl_metadata {
    ($($world:ident),*) => {$(
        impl<T: Plugin> $world::exports::dragoman::translator::metadata::Guest for Adapter<T> {
            fn info() -> wit::PluginInfo {
                info::<T>()
            }
        }
    )*};
}
impl_metadata!(metadata);

macro_rules! impl_inbound {
    ($($world:ident),*) => {$(
        impl<T: Inbound> $world::exports::dragoman::translator::inbound::Guest for Adapter<T> {
            fn idempotency_key(message: wit::VendorMessage) -> Option<String> {
                key::<T>(message)
            }
            fn translate(message: wit::VendorMessage) -> Result<Vec<wit::DomainEvent>, wit::TranslateError> {
                translate::<T>(message)
            }
        }
    )*};
}
impl_inbound!(inbound);

macro_rules! impl_outbound {
    ($($world:ident),*) => {$(
        impl<T: Outbound> $world::exports::dragoman::translator::outbound::Guest for Adapter<T> {
            fn encode(command: wit::DomainCommand) -> Result<wit::VendorRequest, wit::TranslateError> {
                encode::<T>(command)
            }
            fn decode(
                command: wit::DomainCommand,
                response: wit::VendorResponse,
            ) -> Result<Vec<wit::DomainEvent>, wit::TranslateError> {
                decode::<T>(command, response)
            }
        }
    )*};
}
impl_outbound!(outbound);

/// Implements the generated fold export for any type that implements [`crate::Projector`].
pub struct ProjectorAdapter<T>(PhantomData<T>);

mod fold_wit {
    pub(crate) use super::projector::dragoman::projector::types::*;
}

impl<T: crate::Projector> projector::exports::dragoman::projector::fold::Guest
    for ProjectorAdapter<T>
{
    fn info() -> fold_wit::ProjectorInfo {
        let info = T::info();
        fold_wit::ProjectorInfo {
            name: info.name,
            version: info.version,
            entity_type: info.entity_type,
        }
    }

    fn initial_state() -> String {
        crate::projector::encode_state(&T::initial())
    }

    fn apply(state: String, event: fold_wit::EntityEvent) -> Result<String, fold_wit::Failure> {
        let state = crate::projector::decode_state::<T::State>(&state);
        let event = crate::projector::StreamEvent::from_wit(event);
        T::apply(state, &event)
            .map(|next| crate::projector::encode_state(&next))
            .map_err(|refusal| fold_wit::Failure {
                code: refusal.code,
                message: refusal.message,
            })
    }
}
