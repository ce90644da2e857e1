//! Link with GNU ld: syscall_intercept's assembly has no GNU-stack note, and rust-lld then refuses
//! to produce a shared object ("requires an executable stack"); bfd gives a non-executable stack.
fn main() {
    println!("cargo:rustc-link-arg=-fuse-ld=bfd");
    println!("cargo:rustc-link-arg=-Wl,-z,noexecstack");
    println!("cargo:rerun-if-changed=build.rs");
}
