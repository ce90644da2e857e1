//! Links libpmem (static, through pmdk-sys) with what it needs: Debian's library directory and
//! the shared ndctl and daxctl libraries it calls into.
fn main() {
    println!("cargo:rustc-link-search=native=/usr/lib/x86_64-linux-gnu");
    println!("cargo:rustc-link-lib=dylib=ndctl");
    println!("cargo:rustc-link-lib=dylib=daxctl");
    println!("cargo:rerun-if-changed=build.rs");
}
