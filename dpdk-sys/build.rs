//! Binds libdpdk (found with `pkg-config`): bindgen over `wrapper.h`, plus the C wrappers that
//! bindgen writes for static inline functions, compiled with the pkg-config cflags; and
//! intel-ipsec-mb (`ipsec_mb.h`), the AES-GCM library under DPDK's crypto_ipsec_mb PMD.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config: {e} (install pkg-config and libdpdk-dev)"));
    if !out.status.success() {
        panic!("pkg-config {args:?} libdpdk failed: {} (install libdpdk-dev)", String::from_utf8_lossy(&out.stderr));
    }
    // The flags contain no quoted spaces (checked on Debian's libdpdk.pc).
    String::from_utf8(out.stdout)
        .expect("pkg-config output is not UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let header = crate_dir.join("wrapper.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let cflags = pkg_config(&["--cflags"]);
    let libs = pkg_config(&["--libs"]);

    // Link: every -l as a dylib (Debian ships shared libraries; PMDs are dlopen()ed by EAL from
    // its plugin directory), every -L as a search path. rustc already links with --as-needed, so
    // only the libraries really used (eal, ethdev, mbuf, mempool, ...) end up in DT_NEEDED.
    for flag in &libs {
        if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if flag != "-Wl,--as-needed" {
            // rustc-link-arg would not reach the crates that depend on dpdk-sys.
            println!("cargo:warning=ignoring pkg-config libdpdk link flag {flag}");
        }
    }

    let wrap_stem = out_dir.join("static_wrappers");
    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .clang_args(&cflags)
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        // Without an allowlist the wrapper file would wrap clang's x86 intrinsics too, which gcc
        // rejects; everything DPDK names starts with rte_/RTE_.
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        // Packed with bitfields: Debug cannot be derived.
        .no_debug("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false)
        // Function-like macros such as RTE_BIT64 (RTE_ETH_RSS_*, RTE_ETH_RX_OFFLOAD_*) are
        // evaluated by clang instead of being dropped.
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(&out_dir)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_stem)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on wrapper.h");
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("cannot write bindings.rs");

    // The generated C file #includes wrapper.h by its absolute path; cflags come last so that
    // pkg-config's -march (corei7: SSSE3 for _mm_alignr_epi8 in rte_memcpy) wins over cc's
    // default target flags.
    let mut build = cc::Build::new();
    build
        .file(wrap_stem.with_extension("c"))
        .include(&crate_dir)
        .define("ALLOW_EXPERIMENTAL_API", None)
        .flag_if_supported("-Wno-duplicate-decl-specifier")
        .warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("dpdk_static_wrappers");

    // intel-ipsec-mb: the manager (a table of function pointers chosen for this CPU) and the
    // AES-GCM key and context structures. Nothing static inline is needed from it.
    let imb_header = crate_dir.join("ipsec_mb.h");
    println!("cargo:rerun-if-changed={}", imb_header.display());
    println!("cargo:rustc-link-lib=dylib=IPSec_MB");
    bindgen::Builder::default()
        .header(imb_header.to_str().unwrap())
        .allowlist_function(
            "alloc_mb_mgr|free_mb_mgr|init_mb_mgr_auto|imb_get_version_str|imb_get_errno|imb_get_strerror",
        )
        .allowlist_type("IMB_MGR|IMB_ARCH|gcm_key_data|gcm_context_data")
        .allowlist_var("IMB_VERSION_STR")
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on ipsec_mb.h (install libipsec-mb-dev)")
        .write_to_file(out_dir.join("ipsec_mb.rs"))
        .expect("cannot write ipsec_mb.rs");
}
