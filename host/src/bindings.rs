//! The only `bindgen!` call: host bindings for every world of `wit/`.
//!
//! The `translator` world includes both directions; a plugin may export either or both,
//! so callers resolve each exported interface on its own (its `GuestIndices`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dragoman:translator/translator",
});
