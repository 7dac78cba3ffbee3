//! Rust bindings of the `loan:policy` world in `wit/`, generated at build
//! time. Private to the crate: the public API speaks the domain's types.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    // The bureau answers over the network; everything else is immediate.
    imports: { "loan:policy/bureau": async },
    exports: { default: async },
});

pub(crate) use loan::policy::types as wit;
