// What both integer PARO kernels (attn_sparse.wgsl, attn_sparse_tiled.wgsl) bind, composed
// in before them with dot4 (runtime/ops/attn_sparse_kernels.ts dot4Lib): each kernel declares
// its own Params (the launch fields it reads). Codes: q and k rows of DP4 words, V transposed
// (see attn_sparse_quant.wgsl); sc holds the q, k, v scales; masks the block mask rows; perm
// the head's reordering (the output row goes to token perm[h, pos]).
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qc: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vt: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<f32>;
@group(0) @binding(5) var<storage, read> masks: array<u32>;
@group(0) @binding(6) var<storage, read> perm: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<DT>;

fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
  return dot4(a.x, b.x) + dot4(a.y, b.y) + dot4(a.z, b.z) + dot4(a.w, b.w);
}
