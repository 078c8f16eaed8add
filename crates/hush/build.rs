//! Rebuilds `hush` whenever the web app it embeds (`web/app/`, see `src/edge.rs`) changes. The
//! embedding macro notices edits to the files it already knew, but not a file added or removed;
//! Cargo does, for a directory named here.

fn main() {
    println!("cargo:rerun-if-changed=../../web/app");
}
