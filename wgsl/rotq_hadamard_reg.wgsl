// Fused randomised block-Hadamard rotation + per-token quantization with the butterflies in
// registers: the GPUs' kernel for rows that fit workgroup memory. R rows a workgroup, TPR =
// K/V threads a row, V values a thread:
// 1. the R rows are read coalesced into workgroup memory, a vec4 a thread at a time, each
//    value times s (random signs, smoothing and normalisation in one factor) before any
//    butterfly;
// 2. each thread takes V neighbouring values and runs stages h = 1 … V/2 (or BLOCK/2) in
//    registers;
// 3. while stages are left (BLOCK > V), after an exchange through workgroup memory, each
//    thread takes runs of values h apart from its block's P = BLOCK/V threads' results and runs
//    the next log2 V stages (or those left) in registers;
// 4. the rotated values go back to workgroup memory, the row's absmax to an atomic (the bits
//    of a non-negative f32 order as a u32), then codes four per u32 and the scale, or the
//    rotated row (!QUANT), or with GROUP > 0 a scale per group (rotq_groups.wgsl, appended
//    by the host).
// Two to four barriers a row where rotq_hadamard.wgsl takes about fifteen. Every butterfly
// is (a + b, a − b) in f32, stages in order, as there and in the CPU reference
// (runtime/reference/rotq.ts): the same values bit for bit.
override TPR: u32 = 72u;      // threads a row: K / V
override R: u32 = 4u;         // rows a workgroup
override WG: u32 = 288u;      // TPR · R
override K: u32 = 1152u;      // row width (a multiple of the block and of V)
override SLOTS: u32 = 4896u;  // R·K + R·K/V: one pad word every V values
override QUANT: bool = true;  // write codes + scales (else the rotated row)
override BITS: u32 = 8u;      // activation bits
override GROUP: u32 = 0u;     // values a scale (a multiple of 4 dividing K); 0: the row
override ASYM: bool = false;  // grouped: levels from each group's min to its max
// Values a thread (16 or 32; the host writes it, and the stages for its block).
const V: u32 = 16u;

struct Params { M: u32, K: u32, words: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> codes: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<DT>;

var<workgroup> buf: array<f32, SLOTS>;
var<workgroup> amax: array<atomic<u32>, R>;

// Workgroup slot of value i: a pad word every V values keeps V-strided reads off one bank.
fn slot(i: u32) -> u32 { return i + i / V; }

// Offset o's bits from lo up moved w bits higher: the value of a run's 0-th member.
fn spread(o: u32, lo: u32, w: u32) -> u32 {
  return (o & ((1u << lo) - 1u)) | ((o >> lo) << (lo + w));
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row0 = (wid.x + wid.y * ng.x) * R;
  let r = lid / TPR;
  let t = lid % TPR;
  let row = row0 + r;
  if (lid < R) { atomicStore(&amax[lid], 0u); }
  // A vec4 a thread at a time (scalar loads took 4× the instructions for the same bytes).
  let K4 = K / 4u;
  for (var i = lid; i < R * K4; i += WG) {
    let ri = i / K4;
    let k4 = i - ri * K4;
    if (row0 + ri < p.M) {
      let v = vec4<f32>(x[(row0 + ri) * K4 + k4]) * s[k4];
      let o = slot(4u * i); // four neighbouring slots: a pad word falls after V values, V ≥ 16
      buf[o] = v.x;
      buf[o + 1u] = v.y;
      buf[o + 2u] = v.z;
      buf[o + 3u] = v.w;
    }
  }
  workgroupBarrier();

  // Steps 2 and 3 on registers v0 … v(V−1), each value back to its slot after each phase.
  // Written out by the host (runtime/ops/rotq_hadamard_reg.ts regStagesSource): named
  // registers, where a loop-indexed private array may go to local memory.
  let a0 = r * K + t * V;
  //@stages
  if (QUANT && GROUP == 0u) {
    //@absmax
    atomicMax(&amax[r], bitcast<u32>(m));
  }
  workgroupBarrier();
  if (row >= p.M) { return; }

  let base = r * K;
  if (!QUANT) {
    for (var k = t; k < K; k += TPR) { y[row * K + k] = DT(buf[slot(base + k)]); }
    return;
  }
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  if (GROUP > 0u) {
    quant_groups(row, base, t, TPR); // rotq_groups.wgsl
    return;
  }
  let d = sym_grid(bitcast<f32>(atomicLoad(&amax[r])), qmax);
  if (t == 0u) { scales[row] = d.x; }
  for (var w = t; w < K / 4u; w += TPR) {
    codes[row * p.words + w] = pack_sym(rotated4_at(base, 4u * w), d.y, qmax);
  }
}

// The rotated value at column k of the workgroup's row at base (rotq_groups.wgsl reads them).
fn rotated_at(base: u32, k: u32) -> f32 { return buf[slot(base + k)]; }

// Columns k … k+3 of the workgroup's row at base.
fn rotated4_at(base: u32, k: u32) -> vec4<f32> {
  let i = base + k;
  return vec4<f32>(buf[slot(i)], buf[slot(i + 1u)], buf[slot(i + 2u)], buf[slot(i + 3u)]);
}
