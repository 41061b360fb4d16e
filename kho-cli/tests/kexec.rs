//! `kho kexec --dry-run`: the handover it writes reads back with `kho
//! inspect` and `kho extract`, its plan keeps the next kernel's rules, and
//! every unsafe request is refused with its own kind before anything is
//! loaded. (Loading itself is proven in the real-kernel lab.)

mod common;

use std::path::{Path, PathBuf};

use common::{Run, inspect_json, kho, tmp};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// A bzImage header (boot protocol 2.15, 64-bit entry, relocatable,
/// 2 MiB alignment, init_size 12.5 MiB) with `kernel` bytes after four
/// setup sectors.
fn bzimage(name: &str) -> PathBuf {
    let mut b = vec![0u8; 5 * 512 + 300_000];
    b[0x1f1] = 4;
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x201] = 0x6a;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = 1;
    b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    b[0x234] = 1;
    b[0x236..0x238].copy_from_slice(&0x63u16.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    b[0x260..0x264].copy_from_slice(&0xc7_a000u32.to_le_bytes());
    for (i, x) in b[5 * 512..].iter_mut().enumerate() {
        *x = (i % 251) as u8 | 1;
    }
    // Tests run in parallel and share this file: write a private copy and
    // rename it into place, so no reader ever sees it half written.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let p = tmp(name);
    let part = tmp(&format!("{name}.part{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&part, b).unwrap();
    std::fs::rename(&part, &p).unwrap();
    p
}

fn file(name: &str, len: usize, seed: u8) -> PathBuf {
    let p = tmp(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A 1 GiB PC: low RAM, then RAM from 1 MiB.
const RAM: [&str; 4] = ["--ram", "0x1000:0x9e000", "--ram", "0x100000:0x3fee0000"];

fn dry_run(out: &Path, extra: &[String]) -> Run {
    let kernel = bzimage("bzImage");
    let mut args: Vec<String> = vec![
        "kexec".into(),
        "--kernel".into(),
        kernel.display().to_string(),
        "--command-line".into(),
        "console=ttyS0 kho=on liveupdate=on".into(),
        "--release".into(),
        "7.2.13-test".into(),
        "--json".into(),
        "--dry-run".into(),
        out.display().to_string(),
    ];
    args.extend(RAM.iter().map(|s| s.to_string()));
    args.extend(extra.iter().cloned());
    kho(&args)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_dry_run_writes_a_handover_that_reads_back_exactly() {
    let one = file("one", 1, 7);
    let big = file("big", 3 * MIB as usize + 123, 9);
    let small = file("small", 12_345, 3);
    let region = file("region", 5000, 1);
    let out = tmp("dry");
    let run = dry_run(
        &out,
        &strings(&[
            "--test-data",
            "2M",
            "--memfd",
            &format!("vm0:1:{}", one.display()),
            "--memfd",
            &format!("vm0:2:{}:4096", big.display()),
            "--memfd",
            &format!("vm1:9:{}:12345", small.display()),
            "--reserve-mem",
            &format!("lab_r:4M:4096:{}", region.display()),
            "--kexec-count",
            "3",
        ]),
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let v = run.json();
    let plan = &v["plan"];
    assert_eq!(v["dry_run"], true);

    // The plan: scratch first (4 MiB aligned, below 4 GiB, 96 MiB free),
    // the kernel at its preferred address inside it, the arena after it.
    let scratch = &plan["scratch"][0];
    let (s_addr, s_size) = (scratch["addr"].as_u64().unwrap(), scratch["size"].as_u64().unwrap());
    assert_eq!(s_addr, 16 * MIB);
    assert_eq!(s_addr % (4 * MIB), 0);
    assert_eq!(s_size % (4 * MIB), 0);
    assert!(plan["scratch_free"].as_u64().unwrap() >= 96 * MIB);
    assert_eq!(plan["kernel_entry"], 16 * MIB + 0x200);
    let arena = plan["arena"].as_array().unwrap();
    assert!(arena[0].as_u64().unwrap() >= s_addr + s_size, "the arena lies after scratch");
    let segs = plan["segments"].as_array().unwrap();
    assert!(segs.len() <= 16);
    assert_eq!(segs[0]["what"], "kernel");
    assert_eq!(segs[0]["mem"], 16 * MIB);
    assert_eq!(segs[0]["bufsz"], 300_000);
    let entry = plan["entry"].as_u64().unwrap();
    let boot = segs.iter().find(|s| s["what"] == "boot pages").unwrap();
    assert_eq!(entry, boot["mem"].as_u64().unwrap() + 3 * 4096, "the stub is the fourth boot page");
    let mut last_end = 0;
    for s in segs {
        let (mem, memsz) = (s["mem"].as_u64().unwrap(), s["memsz"].as_u64().unwrap());
        assert!(mem >= last_end, "segments ascend without overlap");
        assert_eq!(mem % 4096, 0);
        assert!(s["bufsz"].as_u64().unwrap() <= memsz);
        last_end = mem + memsz;
    }
    let region_pa = plan["regions"][0]["start"].as_u64().unwrap();
    assert_eq!(plan["regions"][0]["size"], 4 * MIB);
    assert!(segs.iter().any(|s| {
        let (mem, memsz) = (s["mem"].as_u64().unwrap(), s["memsz"].as_u64().unwrap());
        mem <= region_pa && region_pa + 4 * MIB <= mem + memsz
    }));
    assert_eq!(std::fs::read_to_string(out.join("plan.json")).unwrap().parse::<Value>().unwrap(), *plan);

    // kho inspect reads the handover and decodes every layer.
    let img = out.join("handover.img");
    let (code, r) = inspect_json(&img, &[]);
    assert_eq!(code, 0, "{r:#}");
    let text = r.to_string();
    for needle in
        ["\"LUO\"", "\"memblock\"", "\"kexec-metadata\"", "\"kho_test\"", "lab_r", "7.2.13-test", "vm0", "vm1"]
    {
        assert!(text.contains(needle), "{needle} missing from the report: {r:#}");
    }
    assert!(text.contains("\"checksum_holds\":true") || text.contains("\"csum_ok\":true"), "{r:#}");

    // kho extract gives back every file's bytes.
    for (session, token, src) in [("vm0", "1", &one), ("vm0", "2", &big), ("vm1", "9", &small)] {
        let got = tmp(&format!("extract-{session}-{token}"));
        let x = kho(&[
            "extract".to_string(),
            img.display().to_string(),
            session.into(),
            token.into(),
            got.display().to_string(),
        ]);
        assert_eq!(x.code, 0, "{}", x.all());
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(src).unwrap(), "{session}/{token}");
    }
}

fn refused(extra: &[String]) -> (i32, String, String) {
    let out = tmp("refused");
    let run = dry_run(&out, extra);
    let v = run.json();
    assert_eq!(v["ok"], false, "{}", run.all());
    (
        run.code,
        v["error"]["kind"].as_str().unwrap_or("").to_string(),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn unsafe_plans_are_refused_with_their_rule() {
    assert_eq!(refused(&strings(&["--scratch-size", "32M"])).1, "scratch_too_small");
    assert_eq!(refused(&strings(&["--scratch-addr", "0x1100000"])).1, "scratch_misaligned");
    assert_eq!(refused(&strings(&["--scratch-addr", "0x3c000000"])).1, "scratch_not_ram");
    assert_eq!(refused(&strings(&["--scratch-addr", "0x800000", "--scratch-size", "32M"])).1, "scratch_too_small");
    let high = strings(&["--ram", "0x100000000:0x40000000", "--scratch-addr", "0x100000000"]);
    assert_eq!(refused(&high).1, "no_low_scratch");
    let (code, kind, msg) = refused(&strings(&["--scratch-free", "1000M"]));
    assert_eq!((code, kind.as_str()), (2, "no_room"), "{msg}");
    // Data larger than half of RAM.
    let (code, kind, msg) = refused(&strings(&["--test-data", "600M"]));
    assert_eq!((code, kind.as_str()), (2, "no_room"), "{msg}");
    assert!(msg.contains("more than half of RAM"), "{msg}");
}

#[test]
fn bad_requests_are_refused_before_anything_is_built() {
    let f = file("f", 10, 0);
    let two = [
        String::from("--memfd"),
        format!("s:1:{}", f.display()),
        String::from("--memfd"),
        format!("s:1:{}", f.display()),
    ];
    let (code, kind, msg) = refused(&two);
    assert_eq!((code, kind.as_str()), (2, "bad_request"));
    assert!(msg.contains("token 1 used twice"), "{msg}");
    let long = "n".repeat(64);
    let (_, kind, msg) = refused(&[String::from("--memfd"), format!("{long}:1:{}", f.display())]);
    assert_eq!(kind, "bad_request");
    assert!(msg.contains("1 to 63 bytes"), "{msg}");
    let ok63 = "n".repeat(63);
    let out = tmp("ok63");
    assert_eq!(dry_run(&out, &[String::from("--memfd"), format!("{ok63}:1:{}", f.display())]).code, 0);
    let (_, kind, _) = refused(&strings(&["--reserve-mem", "r:4M:4096", "--reserve-mem", "r:2M:4096"]));
    assert_eq!(kind, "bad_request");
    let (_, kind, _) = refused(&strings(&["--reserve-mem", "r:5000:4096"]));
    assert_eq!(kind, "bad_request");

    // Not a bzImage.
    let out = tmp("notbz");
    let mut args = strings(&["kexec", "--kernel"]);
    args.push(f.display().to_string());
    args.extend(strings(&["--command-line", "x", "--json", "--dry-run"]));
    args.push(out.display().to_string());
    args.extend(RAM.iter().map(|s| s.to_string()));
    let run = kho(&args);
    assert_eq!(run.code, 2, "{}", run.all());
    assert_eq!(run.json()["error"]["kind"], "bad_image");

    // An unreadable kernel is a usage error (exit 1), named.
    let run =
        kho(&strings(&["kexec", "--kernel", "/nonexistent/bzImage", "--command-line", "x", "--dry-run", "/tmp/x"]));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("/nonexistent/bzImage"), "{}", run.all());
}
