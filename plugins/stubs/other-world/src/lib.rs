//! Test stub: a well-formed component of a world that is not Sparrow's, which
//! the host must refuse with a message that says so.

wit_bindgen::generate!({
    inline: "
        package test:other;

        world other {
            export run: func() -> u32;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        42
    }
}

export!(Other);
