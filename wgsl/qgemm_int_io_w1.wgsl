// Operands of qgemm_int_cpu.wgsl for any K: four int8 (one u32) per load.
@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(2) var<storage, read> wi: array<u32>;

const ISTEP_WORDS: u32 = 1u;  // words a step
const IONES = 0x01010101u;  // four int8 ones a word
alias IOp = u32;
fn isteps() -> u32 { return p.K4; }
fn istep_base(row: u32) -> u32 { return row * p.K4; }
fn istep_x(base: u32, s: u32) -> IOp { return xq[base + s]; }
fn istep_w(base: u32, s: u32) -> IOp { return wi[base + s]; }
fn idot(a: IOp, b: IOp) -> i32 { return dot4i8(a, b); }
