// Operands of qgemm_int_cpu.wgsl when K4 % 4 == 0: sixteen int8 (a vec4<u32>) per load.
@group(0) @binding(1) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wi: array<vec4<u32>>;

const ISTEP_WORDS: u32 = 4u;  // words a step
const IONES = vec4<u32>(0x01010101u);  // four int8 ones a word
alias IOp = vec4<u32>;
fn isteps() -> u32 { return p.K4 / 4u; }
fn istep_base(row: u32) -> u32 { return row * (p.K4 / 4u); }
fn istep_x(base: u32, s: u32) -> IOp { return xq[base + s]; }
fn istep_w(base: u32, s: u32) -> IOp { return wi[base + s]; }
fn idot(a: IOp, b: IOp) -> i32 {
  return dot4i8(a.x, b.x) + dot4i8(a.y, b.y) + dot4i8(a.z, b.z) + dot4i8(a.w, b.w);
}
