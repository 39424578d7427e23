// The low-rank branch fused into the integer GEMM's store (qgemm_int.wgsl, LR4 > 0):
// out = epilogue(scaled sums + U·Bᵀ) with U = X·Aᵀ [M, R] (gemm version 4, run before) and
// B [N, R], R = 4·LR4. Each invocation adds the branch to its 8×8 block from global memory
// (a workgroup's rows of U and columns of B stay in cache): per 4 of R, 12 vec4 loads and
// 128 FMAs for 4 rows × 8 columns. qgemm_int_nolowrank.wgsl is the stub without bindings.
override LR4: u32 = 0u;

@group(0) @binding(9) var<storage, read> lru: array<DT4>;
@group(0) @binding(10) var<storage, read> lrb: array<DT4>;

/** The branch's terms of rows row … row + 3 at columns col … col + 3 (lo) and colb … colb + 3 (hi). */
struct LrRows { lo: mat4x4<f32>, hi: mat4x4<f32> }

fn lr_u(row: u32, r4: u32) -> vec4<f32> { return vec4<f32>(lru[min(row, p.M - 1u) * LR4 + r4]); }
fn lr_b(col: u32, r4: u32) -> vec4<f32> { return vec4<f32>(lrb[min(col, p.N - 1u) * LR4 + r4]); }
fn lr_dots(u: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(u, b0), dot(u, b1), dot(u, b2), dot(u, b3));
}

fn lr_rows(row: u32, col: u32, colb: u32) -> LrRows {
  var o: LrRows;
  for (var r4 = 0u; r4 < LR4; r4++) {
    let b0 = lr_b(col, r4); let b1 = lr_b(col + 1u, r4);
    let b2 = lr_b(col + 2u, r4); let b3 = lr_b(col + 3u, r4);
    let b4 = lr_b(colb, r4); let b5 = lr_b(colb + 1u, r4);
    let b6 = lr_b(colb + 2u, r4); let b7 = lr_b(colb + 3u, r4);
    for (var i = 0u; i < 4u; i++) {
      let u = lr_u(row + i, r4);
      o.lo[i] += lr_dots(u, b0, b1, b2, b3);
      o.hi[i] += lr_dots(u, b4, b5, b6, b7);
    }
  }
  return o;
}
