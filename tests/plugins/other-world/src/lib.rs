//! A well-formed WebAssembly component that is not a hookhost plugin: it exports a `greet`
//! function instead of `hookhost:plugin/handler`. Hot reload must refuse it and keep the working
//! version serving.

wit_bindgen::generate!({
    inline: "
        package example:greeter;
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
