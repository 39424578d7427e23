// GPTQ's factor on the GPU (runtime/ops/gptq_gpu.ts): U upper-triangular with Uᵀ U = H⁻¹,
// from A = P H P (P the index reversal, done on the host) as U = P L⁻¹ P, A = L Lᵀ. One
// column or row a launch, in f32 (the CPU reference, runtime/quant/gptq.ts, is f64):
//   chol_step j: A[i, k] −= A[i, j]·A[k, j] / A[j, j] for j < k ≤ i (right-looking; column j
//     is final once the steps before it ran);
//   chol_scale: L[i, j] = A[i, j] / √A[j, j] (j ≤ i, 0 above), the pivots A[j, j] to `piv`
//     (the host checks them: not all > 0 means H + λI is not positive definite);
//   inv_init: Y = I (over A's buffer, which the factor no longer needs);
//   inv_step k: Y[i, c] −= L[i, k]·Y[k, c] / L[k, k] for i > k, c ≤ k (row k of Y is then
//     complete: X[k] = Y[k] / L[k, k] is row k of L⁻¹);
//   inv_scale: U[K−1−i, K−1−c] = Y[i, c] / L[i, i] for c ≤ i, 0 elsewhere.
struct Params { K: u32, j: u32 }  // width; the step's column (row)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;    // A, then Y
@group(0) @binding(2) var<storage, read_write> l: array<f32>;    // L
@group(0) @binding(3) var<storage, read_write> u: array<f32>;    // U
@group(0) @binding(4) var<storage, read_write> piv: array<f32>;  // A[j, j], j < K

@compute @workgroup_size(16, 16)
fn chol_step(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let j = p.j;
  let k = j + 1u + g.x;
  let i = j + 1u + g.y;
  if (i >= K || k > i) { return; }
  a[i * K + k] -= a[i * K + j] * a[k * K + j] / a[j * K + j];
}

@compute @workgroup_size(16, 16)
fn chol_scale(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let c = g.x;
  let r = g.y;
  if (r >= K || c >= K) { return; }
  if (c > r) {
    l[r * K + c] = 0.0;
    return;
  }
  let d = a[c * K + c];
  if (r == c) { piv[c] = d; }
  l[r * K + c] = a[r * K + c] / sqrt(d);
}

@compute @workgroup_size(16, 16)
fn inv_init(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  if (g.y >= K || g.x >= K) { return; }
  a[g.y * K + g.x] = select(0.0, 1.0, g.x == g.y);
}

@compute @workgroup_size(16, 16)
fn inv_step(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let k = p.j;
  let c = g.x;
  let i = k + 1u + g.y;
  if (i >= K || c > k) { return; }
  a[i * K + c] -= l[i * K + k] * a[k * K + c] / l[k * K + k];
}

@compute @workgroup_size(16, 16)
fn inv_scale(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let c = g.x;
  let i = g.y;
  if (i >= K || c >= K) { return; }
  var v = 0.0;
  if (c <= i) { v = a[i * K + c] / l[i * K + i]; }
  u[(K - 1u - i) * K + (K - 1u - c)] = v;
}
