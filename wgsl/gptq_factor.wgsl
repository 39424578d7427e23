// GPTQ's factor on the GPU (runtime/quant/gptq_gpu.ts): U upper-triangular with Uᵀ U = H⁻¹,
// from A = P H P (P the index reversal; wgsl/gptq_gather.wgsl builds A) as U = P L⁻¹ P,
// A = L Lᵀ; f32 (the CPU reference, runtime/quant/gptq.ts, is f64), in blocks of 32
// rows/columns:
//   chol_diag j0: the diagonal block's Cholesky factor in workgroup memory (its pivots to
//     `piv`: the host checks all are > 0), written back to A, and its inverse to `dinv`;
//   chol_panel j0: the block column below it, L21 = A21 · L11⁻ᵀ (a thread a row);
//   chol_update j0: the trailing lower triangle, A22 −= L21 · L21ᵀ (16×16 tiles);
//   inv_rows i0: rows i0… of X = L⁻¹ from the finished rows above them,
//     X[I, c] = −L_II⁻¹ · Σ_{k<i0} L[I, k]·X[k, c] (c < i0), X[I, I] = L_II⁻¹ (a workgroup a
//     column);
//   reverse: U[K−1−i, K−1−c] = X[i, c] (c ≤ i), 0 above.
// A's upper triangle and X's are never read, so neither needs clearing.
struct Params { K: u32, j0: u32 }  // width; the block's first row/column

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;     // A, then L (lower)
@group(0) @binding(2) var<storage, read_write> dinv: array<f32>;  // [K/32 blocks, 32, 32] L_II⁻¹
@group(0) @binding(3) var<storage, read_write> x: array<f32>;     // X = L⁻¹ (lower)
@group(0) @binding(4) var<storage, read_write> u: array<f32>;     // U
@group(0) @binding(5) var<storage, read_write> piv: array<f32>;   // pivots, [K]

const B: u32 = 32u;

var<workgroup> s: array<f32, 1024>;   // a 32×32 block
var<workgroup> si: array<f32, 1024>;  // its inverse
var<workgroup> ta: array<f32, 512>;   // update: 16 rows × 32
var<workgroup> tb: array<f32, 512>;   // update: 16 rows × 32
var<workgroup> tc: array<f32, 32>;    // inv_rows: one column's sums

fn bw() -> u32 { return min(B, p.K - p.j0); }

@compute @workgroup_size(32)
fn chol_diag(@builtin(local_invocation_index) t: u32) {
  let K = p.K;
  let j0 = p.j0;
  let n = bw();
  for (var c = 0u; c < B; c++) {
    var v = 0.0;
    if (t < n && c <= t) { v = a[(j0 + t) * K + j0 + c]; }
    s[t * B + c] = v;
    si[t * B + c] = 0.0;
  }
  for (var j = 0u; j < n; j++) {
    workgroupBarrier();
    if (t == j) {
      let d = s[j * B + j];
      piv[j0 + j] = d;
      s[j * B + j] = sqrt(d);
    }
    workgroupBarrier();
    if (t > j && t < n) {
      s[t * B + j] /= s[j * B + j];
    }
    workgroupBarrier();
    if (t > j && t < n) {
      for (var k = j + 1u; k <= t; k++) { s[t * B + k] -= s[t * B + j] * s[k * B + j]; }
    }
  }
  workgroupBarrier();
  if (t < n) {
    for (var c = 0u; c <= t; c++) { a[(j0 + t) * K + j0 + c] = s[t * B + c]; }
  }
  // L11⁻¹ row by row, a thread a column: X[i, c] = (δ_ic − Σ_{c≤k<i} L[i, k]·X[k, c]) / L[i, i].
  for (var i = 0u; i < n; i++) {
    workgroupBarrier();
    if (t <= i) {
      var acc = select(0.0, 1.0, t == i);
      for (var k = t; k < i; k++) { acc -= s[i * B + k] * si[k * B + t]; }
      si[i * B + t] = acc / s[i * B + i];
    }
  }
  workgroupBarrier();
  let o = (j0 / B) * B * B;
  for (var c = 0u; c < B; c++) { dinv[o + t * B + c] = si[t * B + c]; }
}

@compute @workgroup_size(64)
fn chol_panel(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let K = p.K;
  let j0 = p.j0;
  let n = bw();
  let o = (j0 / B) * B * B;
  for (var q = li; q < B * B; q += 64u) { si[q] = dinv[o + q]; }
  workgroupBarrier();
  let i = j0 + n + g.x;
  if (i >= K) { return; }
  var r: array<f32, 32>;
  for (var k = 0u; k < n; k++) { r[k] = a[i * K + j0 + k]; }
  for (var c = 0u; c < n; c++) {  // L21[i, c] = Σ_{k≤c} A21[i, k]·L11⁻¹[c, k]
    var acc = 0.0;
    for (var k = 0u; k <= c; k++) { acc += r[k] * si[c * B + k]; }
    a[i * K + j0 + c] = acc;
  }
}

@compute @workgroup_size(16, 16)
fn chol_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  if (wid.x > wid.y) { return; }  // above the diagonal
  let K = p.K;
  let j0 = p.j0;
  let n = bw();
  let base = j0 + n;
  let t = lid.y * 16u + lid.x;
  for (var q = t; q < 512u; q += 256u) {
    let rr = q / B;
    let c = q % B;
    let ri = base + wid.y * 16u + rr;
    let rk = base + wid.x * 16u + rr;
    var va = 0.0;
    var vb = 0.0;
    if (c < n && ri < K) { va = a[ri * K + j0 + c]; }
    if (c < n && rk < K) { vb = a[rk * K + j0 + c]; }
    ta[q] = va;
    tb[q] = vb;
  }
  workgroupBarrier();
  let i = base + wid.y * 16u + lid.y;
  let k = base + wid.x * 16u + lid.x;
  if (i >= K || k > i) { return; }
  var acc = 0.0;
  for (var c = 0u; c < n; c++) { acc += ta[lid.y * B + c] * tb[lid.x * B + c]; }
  a[i * K + k] -= acc;
}

@compute @workgroup_size(32)
fn inv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) r: u32) {
  let K = p.K;
  let i0 = p.j0;
  let n = bw();
  let c = wid.x + wid.y * 65535u;
  if (c >= i0 + n) { return; }
  let o = (i0 / B) * B * B;
  if (c >= i0) {  // the diagonal block: L_II⁻¹
    if (r < n) { x[(i0 + r) * K + c] = dinv[o + r * B + (c - i0)]; }
    return;
  }
  var acc = 0.0;
  if (r < n) {
    for (var k = c; k < i0; k++) { acc += a[(i0 + r) * K + k] * x[k * K + c]; }
  }
  tc[r] = acc;
  workgroupBarrier();
  if (r < n) {
    var v = 0.0;
    for (var q = 0u; q <= r; q++) { v -= dinv[o + r * B + q] * tc[q]; }
    x[(i0 + r) * K + c] = v;
  }
}

@compute @workgroup_size(16, 16)
fn reverse(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let c = g.x;
  let i = g.y;
  if (i >= K || c >= K) { return; }
  var v = 0.0;
  if (c <= i) { v = x[i * K + c]; }
  u[(K - 1u - i) * K + (K - 1u - c)] = v;
}
