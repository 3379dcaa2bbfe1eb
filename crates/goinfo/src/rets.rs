//! Where a function returns: the offsets of its `RET` instructions, found
//! by decoding its machine code (amd64) from the entry onwards. Probing
//! these instead of the return address (uretprobe) matters for Go: the
//! runtime moves goroutine stacks and checks return addresses while
//! unwinding, so a hijacked return address crashes the program.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

/// Most return instructions accepted in one function (each becomes a
/// uprobe link).
pub const MAX_RETS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetError {
    #[error("no RET instruction in the function")]
    None,
    #[error("more than {MAX_RETS} RET instructions")]
    TooMany,
    #[error("undecodable instruction at offset {0:#x}")]
    Invalid(u64),
}

/// Offsets (from the function's first byte) of every `RET` in `code`,
/// decoded linearly. Go emits no data inside functions, but the bytes
/// after the last instruction may be `INT3` padding up to the next
/// function; decoding stops at the first invalid instruction after a RET
/// has been seen (padding, or the next function's table), and fails
/// before that.
pub fn ret_offsets(code: &[u8]) -> Result<Vec<u64>, RetError> {
    let mut dec = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut out = Vec::new();
    while dec.can_decode() {
        let ins = dec.decode();
        if ins.is_invalid() {
            if out.is_empty() {
                return Err(RetError::Invalid(ins.ip()));
            }
            break;
        }
        if ins.mnemonic() == Mnemonic::Ret {
            if out.len() >= MAX_RETS {
                return Err(RetError::TooMany);
            }
            out.push(ins.ip());
        }
    }
    if out.is_empty() {
        return Err(RetError::None);
    }
    Ok(out)
}

/// Whether `code` begins like a Go function that can grow its stack: a
/// compare of RSP (or R12, for big frames) with `g.stackguard0` at
/// `[R14+0x10]` within the first few instructions. `(*tls.Conn).Read` and
/// `Write` always have one. A function address taken from the wrong base
/// (an externally linked binary whose `.text` starts with C code) lands
/// elsewhere, and a uprobe in the middle of an instruction would break the
/// traced program: better refuse.
pub fn has_stack_check(code: &[u8]) -> bool {
    let mut dec = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    for _ in 0..6 {
        if !dec.can_decode() {
            return false;
        }
        let ins = dec.decode();
        if ins.is_invalid() {
            return false;
        }
        let compares_guard = ins.mnemonic() == Mnemonic::Cmp
            && (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory)
            && ins.memory_base() == Register::R14
            && ins.memory_displacement64() == 0x10;
        if compares_guard {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_go_stack_check() {
        // cmp rsp, [r14+0x10]; jbe …
        assert!(has_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x20]));
        // lea r12, [rsp-0x100]; cmp r12, [r14+0x10]
        assert!(has_stack_check(&[
            0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10
        ]));
        // C code (push rbp; mov rbp, rsp; …) or the middle of an instruction.
        assert!(!has_stack_check(&[
            0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10
        ]));
        assert!(!has_stack_check(&[0x3b, 0x66, 0x10]));
        assert!(!has_stack_check(&[]));
    }

    #[test]
    fn finds_rets_not_c3_bytes() {
        let code = [
            0x48, 0xc7, 0xc0, 0xc3, 0x00, 0x00,
            0x00, // mov rax, 0xc3 (a C3 byte that is no RET)
            0xc3, // ret (offset 7)
            0x48, 0x83, 0xc4, 0x18, // add rsp, 0x18
            0xc2, 0x08, 0x00, // ret 8 (offset 12)
            0xcc, 0xcc, // int3 padding
        ];
        assert_eq!(ret_offsets(&code), Ok(vec![7, 12]));
    }

    #[test]
    fn no_ret_or_garbage() {
        assert_eq!(ret_offsets(&[0x90, 0x90]), Err(RetError::None));
        assert_eq!(ret_offsets(&[]), Err(RetError::None));
        assert!(ret_offsets(&[0x0f, 0xff]).is_err());
        // Truncated instruction at the end after a RET: the RET stands.
        assert_eq!(ret_offsets(&[0xc3, 0x48]), Ok(vec![0]));
    }
}
