// GEMM version 3, for CPU adapters (llvmpipe/lavapipe). There every load from storage or
// workgroup memory is a per-lane loop (~8 cycles a lane for a vec4, uniform address or not)
// while FMAs are 8-wide SIMD, so loads set the speed. Each invocation computes an RT×CT
// block straight from storage (no workgroup memory, no barriers): per K step it loads RT + CT
// operands and does RT·CT dot products into scalar accumulators. Bigger blocks spill the
// 16 AVX2 registers and get slower again: 4×4 is best for f32, 4×8 for packed f16.
// The K step and the operand type come from the io fragment (step_x, step_w, step_dot).
// Everything is unrolled by hand: private arrays with dynamic indices would spill.
override WG: u32 = 64u;
override RT: u32 = 4u; // rows per invocation, 1 … 4
override CT: u32 = 4u; // columns per invocation, 1 … 8

fn store_row(row: u32, n0: u32, a: vec4<f32>, b: vec4<f32>) {
  if (row >= p.M) { return; }
  for (var j = 0u; j < CT; j++) {
    let col = n0 + j;
    if (col < p.N) { gemm_store(row, col, select(b[j % 4u], a[j % 4u], j < 4u)); }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let lane = gid.x + gid.y * ng.x * WG;
  let nb = (p.N + CT - 1u) / CT;
  let m0 = (lane / nb) * RT;
  let n0 = (lane % nb) * CT;
  // Rows and columns past the edge read clamped ones; their results are never stored.
  let x0 = row_base(min(m0, p.M - 1u));
  let x1 = row_base(min(m0 + 1u, p.M - 1u));
  let x2 = row_base(min(m0 + 2u, p.M - 1u));
  let x3 = row_base(min(m0 + 3u, p.M - 1u));
  let w0 = row_base(min(n0, p.N - 1u));
  let w1 = row_base(min(n0 + 1u, p.N - 1u));
  let w2 = row_base(min(n0 + 2u, p.N - 1u));
  let w3 = row_base(min(n0 + 3u, p.N - 1u));
  let w4 = row_base(min(n0 + 4u, p.N - 1u));
  let w5 = row_base(min(n0 + 5u, p.N - 1u));
  let w6 = row_base(min(n0 + 6u, p.N - 1u));
  let w7 = row_base(min(n0 + 7u, p.N - 1u));
  var s00 = 0.0; var s01 = 0.0; var s02 = 0.0; var s03 = 0.0; var s04 = 0.0; var s05 = 0.0; var s06 = 0.0; var s07 = 0.0;
  var s10 = 0.0; var s11 = 0.0; var s12 = 0.0; var s13 = 0.0; var s14 = 0.0; var s15 = 0.0; var s16 = 0.0; var s17 = 0.0;
  var s20 = 0.0; var s21 = 0.0; var s22 = 0.0; var s23 = 0.0; var s24 = 0.0; var s25 = 0.0; var s26 = 0.0; var s27 = 0.0;
  var s30 = 0.0; var s31 = 0.0; var s32 = 0.0; var s33 = 0.0; var s34 = 0.0; var s35 = 0.0; var s36 = 0.0; var s37 = 0.0;
  for (var s = 0u; s < steps(); s++) {
    let b0 = step_w(w0, s);
    var b1 = b0; var b2 = b0; var b3 = b0; var b4 = b0; var b5 = b0; var b6 = b0; var b7 = b0;
    if (CT > 1u) { b1 = step_w(w1, s); } if (CT > 2u) { b2 = step_w(w2, s); } if (CT > 3u) { b3 = step_w(w3, s); }
    if (CT > 4u) { b4 = step_w(w4, s); } if (CT > 5u) { b5 = step_w(w5, s); } if (CT > 6u) { b6 = step_w(w6, s); } if (CT > 7u) { b7 = step_w(w7, s); }
    let a = step_x(x0, s);
    s00 += step_dot(a, b0);
    if (CT > 1u) { s01 += step_dot(a, b1); } if (CT > 2u) { s02 += step_dot(a, b2); } if (CT > 3u) { s03 += step_dot(a, b3); }
    if (CT > 4u) { s04 += step_dot(a, b4); } if (CT > 5u) { s05 += step_dot(a, b5); } if (CT > 6u) { s06 += step_dot(a, b6); } if (CT > 7u) { s07 += step_dot(a, b7); }
    if (RT > 1u) {
      let a = step_x(x1, s);
      s10 += step_dot(a, b0);
      if (CT > 1u) { s11 += step_dot(a, b1); } if (CT > 2u) { s12 += step_dot(a, b2); } if (CT > 3u) { s13 += step_dot(a, b3); }
      if (CT > 4u) { s14 += step_dot(a, b4); } if (CT > 5u) { s15 += step_dot(a, b5); } if (CT > 6u) { s16 += step_dot(a, b6); } if (CT > 7u) { s17 += step_dot(a, b7); }
    }
    if (RT > 2u) {
      let a = step_x(x2, s);
      s20 += step_dot(a, b0);
      if (CT > 1u) { s21 += step_dot(a, b1); } if (CT > 2u) { s22 += step_dot(a, b2); } if (CT > 3u) { s23 += step_dot(a, b3); }
      if (CT > 4u) { s24 += step_dot(a, b4); } if (CT > 5u) { s25 += step_dot(a, b5); } if (CT > 6u) { s26 += step_dot(a, b6); } if (CT > 7u) { s27 += step_dot(a, b7); }
    }
    if (RT > 3u) {
      let a = step_x(x3, s);
      s30 += step_dot(a, b0);
      if (CT > 1u) { s31 += step_dot(a, b1); } if (CT > 2u) { s32 += step_dot(a, b2); } if (CT > 3u) { s33 += step_dot(a, b3); }
      if (CT > 4u) { s34 += step_dot(a, b4); } if (CT > 5u) { s35 += step_dot(a, b5); } if (CT > 6u) { s36 += step_dot(a, b6); } if (CT > 7u) { s37 += step_dot(a, b7); }
    }
  }
  // One store site in a loop (not RT inlined epilogues) keeps the compiled code small.
  let a0 = vec4<f32>(s00, s01, s02, s03); let b0 = vec4<f32>(s04, s05, s06, s07);
  let a1 = vec4<f32>(s10, s11, s12, s13); let b1 = vec4<f32>(s14, s15, s16, s17);
  let a2 = vec4<f32>(s20, s21, s22, s23); let b2 = vec4<f32>(s24, s25, s26, s27);
  let a3 = vec4<f32>(s30, s31, s32, s33); let b3 = vec4<f32>(s34, s35, s36, s37);
  for (var r = 0u; r < RT; r++) {
    let a = select(select(select(a0, a1, r == 1u), a2, r == 2u), a3, r == 3u);
    let b = select(select(select(b0, b1, r == 1u), b2, r == 2u), b3, r == 3u);
    store_row(m0 + r, n0, a, b);
  }
}
