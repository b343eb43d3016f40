use std::time::Duration;

use super::engine::ticks;

#[test]
fn deadline_ticks_round_up_and_add_one() {
    let tick = Duration::from_millis(5);
    assert_eq!(ticks(Duration::from_millis(100), tick), 21);
    assert_eq!(ticks(Duration::from_millis(101), tick), 22);
    assert_eq!(ticks(Duration::ZERO, tick), 1);
}

#[test]
fn core_modules_are_told_apart_from_components() {
    assert!(super::wasmparser_is_core_module(b"\0asm\x01\0\0\0"));
    assert!(!super::wasmparser_is_core_module(b"\0asm\x0d\0\x01\0"));
    assert!(!super::wasmparser_is_core_module(b"junk"));
}
