//! The command line itself: help, usage errors, unreadable images, exit
//! codes, and the JSON schema file.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// The independent writer's image (`tests/vectors/independent-v4.img.zst`).
static VECTOR: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| vector("independent-v4.img").display().to_string());

#[test]
fn help_documents_commands_options_and_exit_codes() {
    let run = kho(&["--help"]);
    assert_eq!(run.code, 0, "{}", run.all());
    for want in ["inspect", "map", "Exit codes:", "2  the handover is corrupt", "3  no handover root found"] {
        assert!(run.stdout.contains(want), "{want:?} not in {}", run.stdout);
    }
    let run = kho(&["inspect", "--help"]);
    assert_eq!(run.code, 0);
    for want in ["--json", "inspect.schema.json", "--fdt <PA>", "--scratch <PA:SIZE>", "[default: 18]", "huge folios"] {
        assert!(run.stdout.contains(want), "{want:?} not in {}", run.stdout);
    }
    let run = kho(&["map", "--help"]);
    assert!(run.stdout.contains("--svg <FILE>"), "{}", run.stdout);
    assert_eq!(kho(&["--version"]).code, 0);
}

#[test]
fn usage_errors_exit_1() {
    for args in [
        &[][..],
        &["inspect"][..],
        &["inspect", VECTOR.as_str(), "--fdt", "zz"][..],
        &["inspect", VECTOR.as_str(), "--max-order", "99"][..],
        &["inspect", VECTOR.as_str(), "--scratch", "0x1000"][..],
        &["map", VECTOR.as_str()][..],
        &["frobnicate", VECTOR.as_str()][..],
    ] {
        let run = kho(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(!run.stderr.is_empty());
    }
}

#[test]
fn unreadable_images_exit_1() {
    let run = kho(&["inspect", "/nonexistent/image.img"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("No such file"), "{}", run.stderr);
    let text = tmp("not-elf.img");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    let run = kho(&["inspect", text.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not a usable ELF64 core image"), "{}", run.stderr);
    let tiny = tmp("tiny.img");
    std::fs::write(&tiny, b"\x7fELF").unwrap();
    assert_eq!(kho(&["inspect", tiny.to_str().unwrap()]).code, 1);
    // An ELF file that is not a core file: this very program.
    let run = kho(&["inspect", env!("CARGO_BIN_EXE_kho")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("is not ET_CORE"), "{}", run.stderr);
    // As JSON too.
    let (code, v) = inspect_json(&text, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "image");
    assert!(v["image"].is_null());
    // An unwritable SVG path.
    let run = kho(&["map", VECTOR.as_str(), "--svg", "/nonexistent/dir/map.svg"]);
    assert_eq!(run.code, 1, "{}", run.all());
}

#[test]
fn numbers_take_hex_decimal_and_size_suffixes() {
    // The vector's own scratch area, named with --fdt and --scratch.
    let (_, noted) = inspect_json(Path::new(VECTOR.as_str()), &[]);
    let fdt = noted["root"]["fdt_pa"].as_u64().unwrap();
    for scratch in ["0x8080_0000:4M", "2155872256:4194304", "0x80800000:4096K"] {
        let (code, v) = inspect_json(Path::new(VECTOR.as_str()), &["--fdt", &fdt.to_string(), "--scratch", scratch]);
        assert_eq!(code, 0, "{scratch}: {v}");
        assert_eq!(v["scratch"], json!([{ "pa": 0x8080_0000u64, "size": 4u64 << 20 }]), "{scratch}");
        assert_eq!(v["root"]["source"], "option");
    }
}

/// Every object in the schema lists all its members as required (so every
/// documented member is always present), and every `$ref` resolves.
#[test]
fn schema_is_complete_and_closed() {
    let schema = schema();
    fn walk(root: &Value, s: &Value, at: &str, objects: &mut usize) {
        match s {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("{at}: {r}"));
                    assert!(root["$defs"].get(name).is_some(), "{at}: dangling {r}");
                }
                if let Some(props) = o.get("properties").and_then(Value::as_object) {
                    *objects += 1;
                    let mut req: Vec<&str> =
                        o["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
                    req.sort_unstable();
                    keys.sort_unstable();
                    assert_eq!(req, keys, "{at}: required and properties differ");
                    assert_eq!(o.get("additionalProperties"), Some(&Value::Bool(false)), "{at}: not closed");
                }
                for (k, v) in o {
                    walk(root, v, &format!("{at}/{k}"), objects);
                }
            }
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| walk(root, v, &format!("{at}/{i}"), objects)),
            _ => {}
        }
    }
    let mut objects = 0;
    walk(&schema, &schema, "#", &mut objects);
    assert!(objects >= 10, "{objects}");
    assert_eq!(schema["$defs"]["report"]["properties"]["schema_version"]["const"], 2);
}

/// The checker used on every JSON output in these tests does catch
/// departures from the schema.
#[test]
fn schema_check_rejects_departures() {
    let (code, good) = inspect_json(Path::new(VECTOR.as_str()), &[]);
    assert_eq!(code, 0);
    assert!(validate(&good).is_ok());
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        validate(&v).expect_err(&format!("accepted {v}"))
    };
    assert!(
        bad(&|v| {
            v.as_object_mut().unwrap().remove("tree");
        })
        .contains("missing \"tree\"")
    );
    assert!(bad(&|v| v["extra"] = json!(1)).contains("unexpected member \"extra\""));
    assert!(bad(&|v| v["scratch"][0]["pa"] = json!("0x80800000")).contains("$.scratch[0].pa"));
    assert!(bad(&|v| v["root"]["version"] = json!("kho-v5")).contains("$.root.version"));
    assert!(bad(&|v| v["schema_version"] = json!(1)).contains("oneOf"));
    assert!(bad(&|v| v["preserved"]["blocks"] = json!(-1)).contains("below 0"));
    assert!(bad(&|v| v["subtrees"][0]["size"] = json!(true)).contains("$.subtrees[0].size"));
    let err = json!({
        "schema_version": 2, "ok": false, "exit_code": 2,
        "error": { "kind": "corrupt", "fault": "tree_node_shared", "message": "m", "detail": "d", "at": { "pa": null, "node": 4096, "index": 3, "level": 1, "order": null, "value": null, "field": null }, "errno": "EINVAL" },
        "image": null, "candidates": [],
    });
    assert!(validate(&err).is_ok());
    let mut wrong = err.clone();
    wrong["ok"] = json!(true);
    assert!(validate(&wrong).is_err());
    let mut wrong = err.clone();
    wrong["exit_code"] = json!(0);
    assert!(validate(&wrong).is_err());
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    use std::process::{Command, Stdio};
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kho"));
        cmd.args(["inspect", VECTOR.as_str()]).stdout(Stdio::piped()).stderr(Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A raw root FDT (as copied from debugfs) is checked at the FDT level; a
/// copy cut short of its header's `totalsize` is reported as truncated.
#[test]
fn a_raw_fdt_is_read_and_a_truncated_one_is_named() {
    let subtrees =
        [kho_track::fdt::Subtree { name: "LUO".into(), pa: kho_abi::PhysAddr::new(0x3a7000), size: Some(32) }];
    let dtb = kho_track::fdt::build("kho-v4", kho_abi::PhysAddr::new(0x3a6000), &subtrees).unwrap();
    let path = tmp("in-fdt");
    std::fs::write(&path, &dtb).unwrap();
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("a raw root FDT"), "{}", run.stdout);
    assert!(run.stdout.contains("memory map at 0x3a6000"), "{}", run.stdout);
    assert!(run.stdout.contains("LUO  PA 0x3a7000  32 bytes"), "{}", run.stdout);
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0);
    assert_eq!(v["input"], "fdt");
    assert_eq!(v["subtrees"][0]["name"], "LUO");
    assert!(v["subtrees"][0]["preserved"].is_null());

    // Cut as debugfs out/fdt cuts it: the header still says the full size.
    let cut = tmp("out-fdt");
    std::fs::write(&cut, &dtb[..dtb.len() - 40]).unwrap();
    let run = kho(&["inspect", cut.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("truncated") && run.stderr.contains("kho/in/fdt"), "{}", run.stderr);
    let (code, v) = inspect_json(&cut, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["kind"], "truncated");

    // A corrupt one is corrupt; a map of an FDT is a usage error.
    let mut bad = dtb.clone();
    let at = bad.windows(6).position(|w| w == b"kho-v4").unwrap();
    bad[at..at + 6].copy_from_slice(b"kho-v9");
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(kho(&["inspect", path.to_str().unwrap()]).code, 2);
    let run = kho(&["map", path.to_str().unwrap(), "--svg", "-"]);
    assert_eq!(run.code, 1, "{}", run.all());
}

/// `--svg -` writes the map to standard output; I/O errors name the path.
#[test]
fn svg_to_stdout_and_paths_in_io_errors() {
    let run = kho(&["map", VECTOR.as_str(), "--svg", "-"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.starts_with("<svg") || run.stdout.starts_with("<?xml"), "{}", &run.stdout[..80]);
    let run = kho(&["inspect", "/nonexistent/kho.img"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("/nonexistent/kho.img"), "{}", run.stderr);
}
