// Integer GEMM for CPU adapters (lavapipe): as gemm_cpu.wgsl, each invocation computes a
// 4×4 block straight from storage, no workgroup memory: per K step it loads 4 operands of
// X and 4 of W and does 16 dot products. Operands are int8 words (four per u32), the K step
// one word or four (vec4<u32>, 16 int8 per load: loads set the speed there). W is int8
// words [N, K4] — decoded by qgemm_decode.wgsl's to_int8, or 8-bit codes offset by 128
// (MODE 3, WX = 0x80808080 flips them to int8). Sums are i32; the epilogue scales them by
// s_token·s_row and hands them to gemm_store. Step, load and dot come from the io fragment.
override WG: u32 = 64u;
override WX: u32 = 0u;  // XOR applied to every W word (0x80808080 for offset 8-bit codes)
override RAW: u32 = 0u; // 1: store the i32 sums as f32 bit patterns (tests; f32 output)
// Activation groups, their zero points and weight groups (MODE 7, MODE 2 in groups):
// qgemm_int_scales.wgsl (composed in), the i32 sums flushed into f32 ones at the end of each span.
@group(0) @binding(7) var<storage, read> wq: array<u32>;

fn store_rowf(row: u32, n0: u32, v: vec4<f32>) {
  if (row >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let col = n0 + j;
    if (col < p.N) { gemm_store(row, col, select(v[j] * bitcast<f32>(wq[col]), v[j], WGW > 0u)); }
  }
}

fn store_row(row: u32, n0: u32, v: vec4<i32>) {
  if (row >= p.M) { return; }
  let sx = xsc[row];
  for (var j = 0u; j < 4u; j++) {
    let col = n0 + j;
    if (col < p.N) {
      if (RAW == 1u) {
        out[row * p.N + col] = DT(bitcast<f32>(v[j]));
      } else {
        gemm_store(row, col, f32(v[j]) * sx * bitcast<f32>(wq[col]));
      }
    }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let lane = gid.x + gid.y * ng.x * WG;
  let nb = (p.N + 3u) / 4u;
  let m0 = (lane / nb) * 4u;
  let n0 = (lane % nb) * 4u;
  if (m0 >= p.M) { return; }
  // Rows and columns past the edge read clamped ones; their results are never stored.
  let x0 = istep_base(min(m0, p.M - 1u));
  let x1 = istep_base(min(m0 + 1u, p.M - 1u));
  let x2 = istep_base(min(m0 + 2u, p.M - 1u));
  let x3 = istep_base(min(m0 + 3u, p.M - 1u));
  let w0 = istep_base(min(n0, p.N - 1u));
  let w1 = istep_base(min(n0 + 1u, p.N - 1u));
  let w2 = istep_base(min(n0 + 2u, p.N - 1u));
  let w3 = istep_base(min(n0 + 3u, p.N - 1u));
  var s0 = vec4<i32>(0); var s1 = vec4<i32>(0); var s2 = vec4<i32>(0); var s3 = vec4<i32>(0);
  var f0 = vec4<f32>(0.0); var f1 = vec4<f32>(0.0); var f2 = vec4<f32>(0.0); var f3 = vec4<f32>(0.0);
  var ws = vec4<i32>(0);  // asymmetric: Σ w8 of the four columns over this group
  for (var s = 0u; s < isteps(); s++) {
    let b0 = istep_w(w0, s) ^ IOp(WX);
    let b1 = istep_w(w1, s) ^ IOp(WX);
    let b2 = istep_w(w2, s) ^ IOp(WX);
    let b3 = istep_w(w3, s) ^ IOp(WX);
    var a = istep_x(x0, s);
    s0 += vec4<i32>(idot(a, b0), idot(a, b1), idot(a, b2), idot(a, b3));
    a = istep_x(x1, s);
    s1 += vec4<i32>(idot(a, b0), idot(a, b1), idot(a, b2), idot(a, b3));
    a = istep_x(x2, s);
    s2 += vec4<i32>(idot(a, b0), idot(a, b1), idot(a, b2), idot(a, b3));
    a = istep_x(x3, s);
    s3 += vec4<i32>(idot(a, b0), idot(a, b1), idot(a, b2), idot(a, b3));
    if (ASYM) { ws += vec4<i32>(idot(IONES, b0), idot(IONES, b1), idot(IONES, b2), idot(IONES, b3)); }
    if (flushw() > 0u && ((s + 1u) * ISTEP_WORDS) % flushw() == 0u) {
      let kw = s * ISTEP_WORDS;
      let sw = wscale4(n0, kw);
      f0 += vec4<f32>(s0) * (xscale(m0, kw) * sw);
      f1 += vec4<f32>(s1) * (xscale(m0 + 1u, kw) * sw);
      f2 += vec4<f32>(s2) * (xscale(m0 + 2u, kw) * sw);
      f3 += vec4<f32>(s3) * (xscale(m0 + 3u, kw) * sw);
      s0 = vec4<i32>(0); s1 = vec4<i32>(0); s2 = vec4<i32>(0); s3 = vec4<i32>(0);
      if (ASYM) {
        let w = vec4<f32>(ws);
        let g = kw / GROUPW;
        f0 += w * (gzero(m0, g) * sw);
        f1 += w * (gzero(m0 + 1u, g) * sw);
        f2 += w * (gzero(m0 + 2u, g) * sw);
        f3 += w * (gzero(m0 + 3u, g) * sw);
        ws = vec4<i32>(0);
      }
    }
  }
  if (flushw() > 0u) {
    for (var r = 0u; r < 4u; r++) {
      let v = select(select(select(f0, f1, r == 1u), f2, r == 2u), f3, r == 3u);
      store_rowf(m0 + r, n0, v);
    }
    return;
  }
  for (var r = 0u; r < 4u; r++) {
    let v = select(select(select(s0, s1, r == 1u), s2, r == 2u), s3, r == 3u);
    store_row(m0 + r, n0, v);
  }
}
