//! The only `bindgen!` call: host bindings for every world of `wit/`.
//!
//! The `translator` world includes both directions; a plugin may export either or both,
//! so callers resolve each exported interface on its own (its `GuestIndices`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dragoman:translator/translator",
});

/// Host bindings for the projector contract (`wit/projector/`), a package of its own.
pub(crate) mod projector {
    wasmtime::component::bindgen!({
        path: "../wit/projector",
        world: "dragoman:projector/projector",
    });
}
