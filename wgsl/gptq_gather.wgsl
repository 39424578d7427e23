// GPTQ's damped Gram matrix for the factor (runtime/quant/gptq_gpu.ts), gathered on the GPU
// from H as uploaded: A[i, j] = H[idx[i], idx[j]] with idx[i] the checkpoint column rounded
// (K−1−i)-th (GPTQ's order, index-reversed: A = P H P), and A's diagonal from `diag` (the
// host's damped values: the same f32 bits the host-built matrix had). 16×16 tiles.
struct Params { K: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;     // H [K, K], checkpoint order
@group(0) @binding(2) var<storage, read> idx: array<u32>;   // [K]
@group(0) @binding(3) var<storage, read> diag: array<f32>;  // [K] A's diagonal
@group(0) @binding(4) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let K = p.K;
  let j = g.x;
  let i = g.y;
  if (i >= K || j >= K) { return; }
  a[i * K + j] = select(h[idx[i] * K + idx[j]], diag[i], i == j);
}
