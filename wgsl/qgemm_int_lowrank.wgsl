// The low-rank branch of the tiled integer GEMM (qgemm_int.wgsl, LR4 > 0): out =
// epilogue(scaled sums + U·Bᵀ) with U = X·Aᵀ [M, R] (a thin gemm, run before) and B [N, R],
// R = 4·LR4: the bindings and loads (the kernel stages them through its tile buffers).
// qgemm_int_nolowrank.wgsl is the stub without bindings (LR4 stays 0, nothing calls these).
override LR4: u32 = 0u;

@group(0) @binding(9) var<storage, read> lru: array<DT4>;
@group(0) @binding(10) var<storage, read> lrb: array<DT4>;

// Ranks 4·r4 … 4·r4 + 3 of a row of U / of B (zero past R; rows past the edge read the last).
fn lr_u(row: u32, r4: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(lru[min(row, p.M - 1u) * LR4 + min(r4, LR4 - 1u)]), r4 < LR4);
}
fn lr_b(col: u32, r4: u32) -> vec4<f32> {
  return select(vec4<f32>(0.0), vec4<f32>(lrb[min(col, p.N - 1u) * LR4 + min(r4, LR4 - 1u)]), r4 < LR4);
}
