//! A small entry stub that starts a kernel through its 64-bit entry point.
//!
//! The stub runs where a loader jumps: in 64-bit mode, with paging on and
//! an identity map covering at least the stub, the kernel, the zero page
//! and the command line (`kexec_load`'s entry state), interrupts off. It
//! then establishes what the 64-bit boot protocol requires and the loader
//! may not have given:
//!
//! 1. `cli`, `cld`; a stack of its own (the end of its page);
//! 2. a GDT of its own with a flat 64-bit code descriptor at selector 0x10
//!    and a flat data descriptor at 0x18, loaded with `lgdt`;
//! 3. CS reloaded to 0x10 with a far return, DS/ES/SS/FS/GS to 0x18;
//! 4. `rsi` = the zero page, `rbp` = 0, and a jump to the kernel's 64-bit
//!    entry (protected-mode kernel + 0x200).
//!
//! The bytes are position-dependent only through the three absolute
//! values patched in ([`build`]): the GDT descriptor is reached RIP-relative.
//!
//! ```text
//! 00  fa                    cli
//! 01  fc                    cld
//! 02  48 bc <imm64>         mov  rsp, stack_top
//! 0c  48 8d 05 <rel32>      lea  rax, [rip + gdt_ptr]
//! 13  0f 01 10              lgdt [rax]
//! 16  6a 10                 push 0x10
//! 18  48 8d 05 <rel32>      lea  rax, [rip + reload]
//! 1f  50                    push rax
//! 20  48 cb                 retfq
//! 22  b8 18 00 00 00        reload: mov eax, 0x18
//! 27  8e d8 8e c0 8e d0     mov  ds, eax; mov es, eax; mov ss, eax
//! 2d  8e e0 8e e8           mov  fs, eax; mov gs, eax
//! 31  48 be <imm64>         mov  rsi, boot_params
//! 3b  48 b8 <imm64>         mov  rax, entry
//! 45  31 ed                 xor  ebp, ebp
//! 47  ff e0                 jmp  rax
//! 49  (pad to 0x50)
//! 50  gdt: null, null, code 0x00af9a000000ffff, data 0x00cf92000000ffff
//! 70  (pad) 76: gdt_ptr: u16 limit 0x1f, u64 base
//! ```

use crate::HandoffError;

/// Bytes of the stub (code, GDT and its descriptor).
pub const TRAMPOLINE_LEN: usize = 0x80;
/// Offset of the GDT in the stub.
pub const GDT_OFFSET: usize = 0x50;
/// Offset of the `lgdt` operand (limit, base) in the stub.
pub const GDT_PTR_OFFSET: usize = 0x76;
/// The code selector the kernel expects.
pub const BOOT_CS: u16 = 0x10;
/// The data selector the kernel expects.
pub const BOOT_DS: u16 = 0x18;
/// A flat, present, 64-bit (L) code segment, execute/read.
pub const GDT_CODE64: u64 = 0x00af_9a00_0000_ffff;
/// A flat, present, 4 GiB data segment, read/write.
pub const GDT_DATA: u64 = 0x00cf_9200_0000_ffff;

const MOV_RSP: usize = 0x02;
const LEA_GDT: usize = 0x0c;
const LEA_RELOAD: usize = 0x18;
const RELOAD: usize = 0x22;
const MOV_RSI: usize = 0x31;
const MOV_RAX: usize = 0x3b;

const CODE: [u8; 0x49] = [
    0xfa, 0xfc, // cli; cld
    0x48, 0xbc, 0, 0, 0, 0, 0, 0, 0, 0, // mov rsp, imm64
    0x48, 0x8d, 0x05, 0, 0, 0, 0, // lea rax, [rip + rel32]
    0x0f, 0x01, 0x10, // lgdt [rax]
    0x6a, 0x10, // push 0x10
    0x48, 0x8d, 0x05, 0, 0, 0, 0,    // lea rax, [rip + rel32]
    0x50, // push rax
    0x48, 0xcb, // retfq
    0xb8, 0x18, 0, 0, 0, // mov eax, 0x18
    0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, // mov ds/es/ss, eax
    0x8e, 0xe0, 0x8e, 0xe8, // mov fs/gs, eax
    0x48, 0xbe, 0, 0, 0, 0, 0, 0, 0, 0, // mov rsi, imm64
    0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, // mov rax, imm64
    0x31, 0xed, // xor ebp, ebp
    0xff, 0xe0, // jmp rax
];

/// Builds the stub to run at physical (and identity-mapped virtual)
/// address `at`, 16-byte aligned, entering `entry` with `rsi =
/// boot_params` on a stack ending at `stack_top` (16-byte aligned, not
/// inside the stub).
pub fn build(at: u64, entry: u64, boot_params: u64, stack_top: u64) -> Result<[u8; TRAMPOLINE_LEN], HandoffError> {
    if !at.is_multiple_of(16) || at.checked_add(TRAMPOLINE_LEN as u64).is_none() {
        return Err(HandoffError::InvalidValue { what: "trampoline address", value: at });
    }
    if !stack_top.is_multiple_of(16) || (stack_top > at && stack_top - at <= TRAMPOLINE_LEN as u64) {
        return Err(HandoffError::InvalidValue { what: "trampoline stack top", value: stack_top });
    }
    let mut b = [0u8; TRAMPOLINE_LEN];
    b[..CODE.len()].copy_from_slice(&CODE);
    b[MOV_RSP + 2..MOV_RSP + 10].copy_from_slice(&stack_top.to_le_bytes());
    // rel32 operands count from the end of their instruction (7 bytes).
    let rel = |from: usize, to: usize| ((to as i64) - (from as i64 + 7)) as i32;
    b[LEA_GDT + 3..LEA_GDT + 7].copy_from_slice(&rel(LEA_GDT, GDT_PTR_OFFSET).to_le_bytes());
    b[LEA_RELOAD + 3..LEA_RELOAD + 7].copy_from_slice(&rel(LEA_RELOAD, RELOAD).to_le_bytes());
    b[MOV_RSI + 2..MOV_RSI + 10].copy_from_slice(&boot_params.to_le_bytes());
    b[MOV_RAX + 2..MOV_RAX + 10].copy_from_slice(&entry.to_le_bytes());
    let gdt = [0u64, 0, GDT_CODE64, GDT_DATA];
    for (i, d) in gdt.iter().enumerate() {
        b[GDT_OFFSET + 8 * i..GDT_OFFSET + 8 * i + 8].copy_from_slice(&d.to_le_bytes());
    }
    b[GDT_PTR_OFFSET..GDT_PTR_OFFSET + 2].copy_from_slice(&((gdt.len() * 8 - 1) as u16).to_le_bytes());
    b[GDT_PTR_OFFSET + 2..GDT_PTR_OFFSET + 10].copy_from_slice(&(at + GDT_OFFSET as u64).to_le_bytes());
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patched_values_sit_in_their_instructions() {
        let b = build(0x7000, 0x100_0200, 0x6000, 0x8000).unwrap();
        assert_eq!(&b[MOV_RSP..MOV_RSP + 2], &[0x48, 0xbc]);
        assert_eq!(&b[MOV_RSP + 2..MOV_RSP + 10], &0x8000u64.to_le_bytes());
        assert_eq!(&b[MOV_RSI..MOV_RSI + 2], &[0x48, 0xbe]);
        assert_eq!(&b[MOV_RSI + 2..MOV_RSI + 10], &0x6000u64.to_le_bytes());
        assert_eq!(&b[MOV_RAX..MOV_RAX + 2], &[0x48, 0xb8]);
        assert_eq!(&b[MOV_RAX + 2..MOV_RAX + 10], &0x100_0200u64.to_le_bytes());
        assert_eq!(&b[0x47..0x49], &[0xff, 0xe0], "ends in jmp rax");
        // lea rax, [rip + rel32] lands on the GDT pointer and the reload label.
        let rel = |at: usize| i32::from_le_bytes(b[at + 3..at + 7].try_into().unwrap()) as i64 + at as i64 + 7;
        assert_eq!(rel(LEA_GDT), GDT_PTR_OFFSET as i64);
        assert_eq!(rel(LEA_RELOAD), RELOAD as i64);
        assert_eq!(&b[RELOAD..RELOAD + 2], &[0xb8, 0x18], "reload: mov eax, __BOOT_DS");
        // The GDT: selector 0x10 a 64-bit code segment, 0x18 flat data.
        let desc = |sel: usize| u64::from_le_bytes(b[GDT_OFFSET + sel..GDT_OFFSET + sel + 8].try_into().unwrap());
        assert_eq!(desc(BOOT_CS as usize), GDT_CODE64);
        assert_eq!(desc(BOOT_DS as usize), GDT_DATA);
        assert_eq!(GDT_CODE64 >> 53 & 1, 1, "L bit");
        assert_eq!(GDT_CODE64 >> 47 & 1, 1, "present");
        assert_eq!(&b[GDT_PTR_OFFSET..GDT_PTR_OFFSET + 2], &31u16.to_le_bytes());
        assert_eq!(&b[GDT_PTR_OFFSET + 2..GDT_PTR_OFFSET + 10], &(0x7000u64 + 0x50).to_le_bytes());
    }

    #[test]
    fn refuses_a_misplaced_stub_or_stack() {
        assert!(build(0x7008, 0x100_0200, 0x6000, 0x9000).is_err());
        assert!(build(0x7000, 0x100_0200, 0x6000, 0x7040).is_err(), "stack inside the stub");
        assert!(build(0x7000, 0x100_0200, 0x6000, 0x8008).is_err(), "misaligned stack");
        assert!(build(u64::MAX - 15, 0, 0, 0x10).is_err());
    }
}
