// Outlier-aware rotation's two block products for CPU adapters (llvmpipe/lavapipe). There
// FMAs are 8-wide SIMD across lanes while a storage load is a loop over the lanes, but a
// uniform-buffer load at a lane-uniform address is one load for all of them. So a lane is a
// token: the workgroup's WG lanes take RT rows each (r0, r0 + WG, …), its y index CB column
// vec4 of one block, and Q — a uniform where it fits and the adapter's buffers allow (the
// host declares it) — is read at addresses the same for every lane (lavapipe, 2048 tokens ×
// 128, composed product + actQuant: 7.3 ms against 14.2 for the 4 × 8 tiles from storage
// this replaced, `bench/results/cpu-lavapipe/2026-11-29_rotq_2048x128_uniform_q.md`). No
// workgroup memory, no barriers. The host writes out the RT × CB vec4 accumulators and their
// loop as named registers (//@body; a private array indexed in a loop would spill).
//
// STAGE 1: input (x ⊙ s) [M, K], Q = Q1; output column c scattered to dest[c] of t [M, K]
//   (f32, row-major: the permuted stage-1 rows).
// STAGE 2: input t, Q = Q2; output the rotated rows: y [M, K] (DT, !QUANT) or z [M, K] f32
//   (QUANT: actQuant then makes the codes, so that f16 rows are quantized unrounded).
// STAGE 3 (K one block): input x ⊙ s, Q = Q1·P·Q2 composed on the host; output as stage 2 —
//   the whole rotation in one product instead of two.
//
// Each output is the sum over i = 0..B−1 in order of `acc + v_i·Q[i][j]`, the expression of
// the other outlier kernels and the CPU reference (runtime/reference/rotq.ts), so the values
// match it bit for bit.
override B: u32 = 128u; // block (a multiple of 4·CB)
override WG: u32 = 64u;
override CB: u32 = 4u;  // column vec4 a lane (the host's //@body writes as many)
override RT: u32 = 4u;  // token rows a lane (likewise)
override STAGE: u32 = 1u; // 1, 2, or 3 (one block, composed)
override QUANT: bool = true;

struct Params { M: u32, K: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
//@qdecl
@group(0) @binding(4) var<storage, read> dest: array<u32>;
@group(0) @binding(5) var<storage, read_write> t: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<DT4>;
@group(0) @binding(7) var<storage, read_write> z: array<vec4<f32>>;

// mac4: wgsl/rotq_mac4.wgsl (composed before this file).

// The pre-multiplier of input vec4 c4 (stages 1 and 3; stage 2's input has it already).
fn scale(c4: u32) -> vec4<f32> {
  if (STAGE == 2u) { return vec4<f32>(1.0); }
  return s[c4];
}

// Input vec4 c4 of token row (x ⊙ s, with sc = scale(c4), in stages 1 and 3; the permuted
// stage-1 row in stage 2).
fn input(row: u32, c4: u32, sc: vec4<f32>) -> vec4<f32> {
  let i = row * (p.K / 4u) + c4;
  if (STAGE != 2u) { return vec4<f32>(x[i]) * sc; }
  return t[i];
}

// Stores columns c0..c0+3 of token row: scattered through dest (stage 1) or as one vec4.
fn store(row: u32, c0: u32, a: vec4<f32>) {
  if (row >= p.M) { return; }
  if (STAGE == 1u) {
    for (var j = 0u; j < 4u; j++) {
      let d = row * p.K + dest[c0 + j];
      t[d / 4u][d % 4u] = a[j];
    }
  } else if (QUANT) {
    z[(row * p.K + c0) / 4u] = a;
  } else {
    y[(row * p.K + c0) / 4u] = DT4(a);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let B4 = B / 4u;
  let c4 = wg.y * CB;    // this workgroup's first column vec4, over the whole row
  let k0 = c4 - c4 % B4; // the first vec4 of its block
  let cq = c4 % B4;      // … and its first column vec4 within the block (Q's)
  let r0 = wg.x * WG * RT + lid.x;
  // Rows past the edge read the last one; their results are never stored.
  //@body
}
