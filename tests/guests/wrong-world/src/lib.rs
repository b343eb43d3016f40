//! A valid component that exports some other world: the host must refuse it at load.

wit_bindgen::generate!({
    inline: "
        package test:elsewhere;
        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
