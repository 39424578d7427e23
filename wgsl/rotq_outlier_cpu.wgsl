// Outlier-aware rotation's two block products for CPU adapters (llvmpipe/lavapipe), in the
// manner of gemm_cpu.wgsl: there every load is a per-lane loop while FMAs are 8-wide SIMD,
// and a barrier switches every invocation of the workgroup, so each invocation computes a
// 4-token × 8-column tile of one block straight from storage, without workgroup memory or
// barriers: per step of four k, eight vec4 of Q and four vec4 of input for 128 FMAs (4 × 8
// tiles: 2048 tokens × 128 at 0.83× the time of 4 × 4 ones on lavapipe, same values).
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
// match it bit for bit. Lanes: (token group, column pair) with the column pair fastest, so
// neighbouring lanes read neighbouring vec4 of Q from one row and the same input vec4.
override B: u32 = 128u; // block (a multiple of 8)
override WG: u32 = 64u;
override STAGE: u32 = 1u; // 1, 2, or 3 (one block, composed)
override QUANT: bool = true;

struct Params { M: u32, K: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dest: array<u32>;
@group(0) @binding(5) var<storage, read_write> t: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<DT4>;
@group(0) @binding(7) var<storage, read_write> z: array<vec4<f32>>;

// mac4: wgsl/rotq_mac4.wgsl (composed before this file).

// Input vec4 c4 of token row (x ⊙ s in stage 1, the permuted stage-1 row in stage 2).
fn input(row: u32, c4: u32) -> vec4<f32> {
  let i = row * (p.K / 4u) + c4;
  if (STAGE != 2u) { return vec4<f32>(x[i]) * s[c4]; }
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
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let lane = gid.x + gid.y * ng.x * WG;
  let K8 = p.K / 8u;
  let B4 = B / 4u;
  let m0 = (lane / K8) * 4u;
  if (m0 >= p.M) { return; }
  let c4 = 2u * (lane % K8); // this lane's first column group, over the whole row
  let k0 = c4 - c4 % B4;     // the first vec4 of its block
  let cg = c4 % B4;          // … and its first column group within the block
  // Rows past the edge read the last one; their results are never stored.
  let r0 = m0;
  let r1 = min(m0 + 1u, p.M - 1u);
  let r2 = min(m0 + 2u, p.M - 1u);
  let r3 = min(m0 + 3u, p.M - 1u);
  // a: columns 4·cg..4·cg+3, e: the next four.
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var e0 = vec4<f32>(0.0);
  var e1 = vec4<f32>(0.0);
  var e2 = vec4<f32>(0.0);
  var e3 = vec4<f32>(0.0);
  for (var k4 = 0u; k4 < B4; k4++) {
    let qi = 4u * k4 * B4 + cg; // rows 4·k4..4·k4+3 of Q
    let qa = q[qi];
    let qb = q[qi + B4];
    let qc = q[qi + 2u * B4];
    let qd = q[qi + 3u * B4];
    let pa = q[qi + 1u];
    let pb = q[qi + 1u + B4];
    let pc = q[qi + 1u + 2u * B4];
    let pd = q[qi + 1u + 3u * B4];
    let v0 = input(r0, k0 + k4);
    let v1 = input(r1, k0 + k4);
    let v2 = input(r2, k0 + k4);
    let v3 = input(r3, k0 + k4);
    a0 = mac4(a0, v0, qa, qb, qc, qd);
    a1 = mac4(a1, v1, qa, qb, qc, qd);
    a2 = mac4(a2, v2, qa, qb, qc, qd);
    a3 = mac4(a3, v3, qa, qb, qc, qd);
    e0 = mac4(e0, v0, pa, pb, pc, pd);
    e1 = mac4(e1, v1, pa, pb, pc, pd);
    e2 = mac4(e2, v2, pa, pb, pc, pd);
    e3 = mac4(e3, v3, pa, pb, pc, pd);
  }
  store(m0, 4u * c4, a0);
  store(m0 + 1u, 4u * c4, a1);
  store(m0 + 2u, 4u * c4, a2);
  store(m0 + 3u, 4u * c4, a3);
  store(m0, 4u * c4 + 4u, e0);
  store(m0 + 1u, 4u * c4 + 4u, e1);
  store(m0 + 2u, 4u * c4 + 4u, e2);
  store(m0 + 3u, 4u * c4 + 4u, e3);
}
