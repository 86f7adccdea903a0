//! Reading a function's frame shape from its first instructions (x86-64).
//!
//! The JIT and the C++ compiler both open a function with a short, regular prologue: pushes of
//! callee-saved registers, a `sub rsp`, and, when the function keeps a frame pointer, `push rbp`
//! first and RBP pointed at that saved RBP (`mov rbp, rsp` or `lea rbp, [rsp+N]`). That is all
//! the frame walk needs to know: where the caller's return address is. Anything outside these
//! few forms gives `None`, and the walk falls back to the runtime's unwinder for code through
//! it: an unrecognised prologue is never guessed at.
//!
//! Two more forms are known: hand-written runtime stubs that push RBP with the other registers
//! but never point it at anything ([`Shape::SavedRbp`]), and the JIT's on-stack-replacement
//! methods, which open with `mov rax, [rbp]; push rax` ([`Shape::Osr`]).

use crate::capture::verdicts::{MAX_FRAME_WORDS, Shape};

/// The frame shape of code that starts with `code` (at least the prologue's bytes).
pub fn decode(code: &[u8]) -> Option<Shape> {
    let mut i = 0usize;
    if code.starts_with(&[0xF3, 0x0F, 0x1E, 0xFA]) {
        i = 4; // endbr64
    }
    // mov rax, [rbp]; push rax: an OSR method re-saving its Tier0 frame's caller RBP.
    if code[i..].starts_with(&[0x48, 0x8B, 0x45, 0x00, 0x50]) {
        return Some(Shape::Osr);
    }
    let mut pushes = 0u32;
    let mut sub = 0u32;
    let mut rbp_saved = false;
    loop {
        let rest = code.get(i..)?;
        match *rest {
            [0x55, ..] => {
                if pushes != 0 {
                    return None; // RBP saved below other registers: not a frame record
                }
                rbp_saved = true;
                pushes += 1;
                i += 1;
            }
            [op @ 0x50..=0x57, ..] if op != 0x54 => {
                pushes += 1;
                i += 1;
            }
            [0x41, 0x50..=0x57, ..] => {
                pushes += 1;
                i += 2;
            }
            [0x48, 0x83, 0xEC, imm, ..] => {
                sub = sub.checked_add(imm as u32)?;
                i += 4;
            }
            [0x48, 0x81, 0xEC, a, b, c, d, ..] => {
                sub = sub.checked_add(u32::from_le_bytes([a, b, c, d]))?;
                i += 7;
            }
            // lea rsp, [rsp - n]
            [0x48, 0x8D, 0x64, 0x24, disp, ..] if (disp as i8) < 0 => {
                sub = sub.checked_add((disp as i8).unsigned_abs() as u32)?;
                i += 5;
            }
            [0x48, 0x8D, 0xA4, 0x24, a, b, c, d, ..] if i32::from_le_bytes([a, b, c, d]) < 0 => {
                sub = sub.checked_add(i32::from_le_bytes([a, b, c, d]).unsigned_abs())?;
                i += 8;
            }
            // vzeroupper
            [0xC5, 0xF8, 0x77, ..] => i += 3,
            // mov rbp, rsp (both encodings)
            [0x48, 0x8B, 0xEC, ..] | [0x48, 0x89, 0xE5, ..] => return framed(rbp_saved, pushes, sub, 0),
            // lea rbp, [rsp + disp8]
            [0x48, 0x8D, 0x6C, 0x24, disp, ..] => return framed(rbp_saved, pushes, sub, disp as i8 as i64),
            // lea rbp, [rsp + disp32]
            [0x48, 0x8D, 0xAC, 0x24, a, b, c, d, ..] => {
                return framed(rbp_saved, pushes, sub, i32::from_le_bytes([a, b, c, d]) as i64);
            }
            _ => break,
        }
        if i > 64 {
            return None;
        }
    }
    if sub % 8 != 0 {
        return None; // an odd-sized frame: not understood
    }
    // No frame at all cannot make an aligned call: not understood either.
    let words = pushes + sub / 8;
    if words == 0 || words > MAX_FRAME_WORDS as u32 {
        return None;
    }
    let words = words as u16;
    Some(if rbp_saved { Shape::SavedRbp { words } } else { Shape::Frameless { words } })
}

/// For compiled C++ whose prologue comes after an early exit (shrink-wrapping): the shape at
/// the first `push rbp; mov rbp, rsp` within the first bytes, if `offset` (the return address's
/// offset into the function) lies past it. A call can only come once the frame is set up.
pub fn decode_shrink_wrapped(code: &[u8], offset: usize) -> Option<Shape> {
    const FRAME_SETUP: [u8; 4] = [0x55, 0x48, 0x89, 0xE5];
    let at = code.iter().take(32).enumerate().position(|(i, _)| code[i..].starts_with(&FRAME_SETUP))?;
    (offset > at + FRAME_SETUP.len()).then_some(Shape::Framed)
}

/// RBP set to `rsp + disp` after `pushes` pushes and `sub` bytes: framed only when that is the
/// slot of the saved RBP (the first push), i.e. entry − 8.
fn framed(rbp_saved: bool, pushes: u32, sub: u32, disp: i64) -> Option<Shape> {
    let below_entry = 8 * pushes as i64 + sub as i64;
    (rbp_saved && below_entry - disp == 8).then_some(Shape::Framed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_and_jit_frame_pointer_prologues_are_framed() {
        // push rbp; mov rbp, rsp
        assert_eq!(decode(&[0x55, 0x48, 0x89, 0xE5, 0x90]), Some(Shape::Framed));
        // endbr64; push rbp; mov rbp, rsp (48 8b ec)
        assert_eq!(decode(&[0xF3, 0x0F, 0x1E, 0xFA, 0x55, 0x48, 0x8B, 0xEC]), Some(Shape::Framed));
        // push rbp; push r15; push r14; push rbx; sub rsp, 0x28; lea rbp, [rsp+0x40]
        let jit = [0x55, 0x41, 0x57, 0x41, 0x56, 0x53, 0x48, 0x83, 0xEC, 0x28, 0x48, 0x8D, 0x6C, 0x24, 0x40];
        assert_eq!(decode(&jit), Some(Shape::Framed));
        // push rbp; sub rsp, 0x200; lea rbp, [rsp+0x200]
        let big = [0x55, 0x48, 0x81, 0xEC, 0x00, 0x02, 0, 0, 0x48, 0x8D, 0xAC, 0x24, 0x00, 0x02, 0, 0];
        assert_eq!(decode(&big), Some(Shape::Framed));
    }

    #[test]
    fn frameless_prologues_give_the_frame_size() {
        // push rbx; push r14; sub rsp, 0x18; mov ...
        let code = [0x53, 0x41, 0x56, 0x48, 0x83, 0xEC, 0x18, 0x48, 0x8B, 0xDF];
        assert_eq!(decode(&code), Some(Shape::Frameless { words: 5 }));
        // push rax; call ...
        assert_eq!(decode(&[0x50, 0xE8, 0, 0, 0, 0]), Some(Shape::Frameless { words: 1 }));
    }

    #[test]
    fn stubs_that_save_rbp_and_osr_methods_are_recognised() {
        // push rbp; push rbx; push r15; push r14; push r13; push r12; lea rsp, [rsp-0x38]; lea rcx, ...
        let stub = [
            0x55, 0x53, 0x41, 0x57, 0x41, 0x56, 0x41, 0x55, 0x41, 0x54, 0x48, 0x8D, 0x64, 0x24, 0xC8, 0x48, 0x8D, 0x4C,
        ];
        assert_eq!(decode(&stub), Some(Shape::SavedRbp { words: 13 }));
        // push rbp; sub rsp, 0x10; (no frame pointer)
        assert_eq!(decode(&[0x55, 0x48, 0x83, 0xEC, 0x10, 0x90]), Some(Shape::SavedRbp { words: 3 }));
        // mov rax, [rbp]; push rax; sub rsp, 0x40; mov [rsp+..], r15
        assert_eq!(decode(&[0x48, 0x8B, 0x45, 0x00, 0x50, 0x48, 0x83, 0xEC, 0x40, 0x4C, 0x89]), Some(Shape::Osr));
    }

    #[test]
    fn shrink_wrapped_functions_are_framed_past_their_prologue() {
        // test rdi, rdi; je +0x1a3; push rbp; mov rbp, rsp; push r15
        let code = [0x48, 0x85, 0xFF, 0x0F, 0x84, 0xA3, 0x01, 0, 0, 0x55, 0x48, 0x89, 0xE5, 0x41, 0x57];
        assert_eq!(decode(&code), None);
        assert_eq!(decode_shrink_wrapped(&code, 0x201), Some(Shape::Framed));
        assert_eq!(decode_shrink_wrapped(&code, 5), None);
    }

    #[test]
    fn anything_else_is_not_guessed_at() {
        // push rbp; lea rbp, [rsp+0x10]: RBP does not point at the saved RBP
        assert_eq!(decode(&[0x55, 0x48, 0x8D, 0x6C, 0x24, 0x10]), None);
        // push rbx; push rbp: RBP saved below another register
        assert_eq!(decode(&[0x53, 0x55, 0x48, 0x89, 0xE5]), None);
        // sub rsp, 4 (odd frame)
        assert_eq!(decode(&[0x48, 0x83, 0xEC, 0x04, 0x90]), None);
        assert_eq!(decode(&[]), None);
        // pushes nothing: cannot have made an aligned call
        assert_eq!(decode(&[0x48, 0x8B, 0xC7, 0xC3]), None);
    }
}
